package protocol

// DefaultMaxFileSize is max_file_size_bytes when the configuration does not
// set it: the largest file file_read returns and file_write takes (decoded),
// 10 MiB.
const DefaultMaxFileSize = 10 << 20

// lineOverhead is what a line may hold beyond a file's encoded content: the
// JSON-RPC envelope, the path (up to PATH_MAX, escaped) and the other params.
const lineOverhead = 64 << 10

// LineLimit returns the longest request line an agent accepts when files may
// be maxFileSize bytes: room for a file_write of that size in base64
// (4*ceil(n/3) bytes), one sixth more for utf8 content with JSON escapes,
// and 64 KiB for the rest of the request. The QEMU dialect bounds a JSON
// object by the same figure.
func LineLimit(maxFileSize int64) int {
	if maxFileSize < 0 {
		maxFileSize = 0
	}
	return int(4*((maxFileSize+2)/3) + maxFileSize/6 + lineOverhead)
}
