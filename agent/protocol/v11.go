package protocol

// Protocol 1.1 additions beyond the guest operations (guestops.go):
// background commands, chunked file transfer and file_stat.

// Method names added in protocol 1.1 (besides GuestOpsMethods).
const (
	MethodExecStart  = "exec_start"
	MethodExecStatus = "exec_status"
	MethodExecKill   = "exec_kill"
	MethodFileStat   = "file_stat"
)

// Methods11 lists the methods protocol 1.1 adds to Methods, in
// documentation order.
var Methods11 = append([]string{MethodExecStart, MethodExecStatus, MethodExecKill, MethodFileStat}, GuestOpsMethods...)

// ExecStartParams are the params of exec_start.
type ExecStartParams struct {
	Command string   `json:"command"`
	Args    []string `json:"args,omitempty"`
	// Env entries NAME=value are added to the fixed environment (refused
	// while command_whitelist_enabled is true).
	Env              []string `json:"env,omitempty"`
	WorkingDirectory string   `json:"working_directory,omitempty"`
	// Stdin is fed to the command, then closed; absent: /dev/null.
	Stdin         *string `json:"stdin,omitempty"`
	StdinEncoding string  `json:"stdin_encoding,omitempty"` // "utf8" (default) or "base64"
	// TimeoutSeconds defaults to command_timeout_seconds and is capped by
	// max_background_seconds.
	TimeoutSeconds *int  `json:"timeout_seconds,omitempty"`
	CaptureOutput  *bool `json:"capture_output,omitempty"` // default true
	// MergeOutput sends stderr into the stdout stream.
	MergeOutput bool `json:"merge_output,omitempty"`
}

// ExecStartResult is the result of exec_start.
type ExecStartResult struct {
	ID             int64 `json:"id"`
	PID            int   `json:"pid"`
	TimeoutSeconds int   `json:"timeout_seconds"`
}

// ExecStatusParams are the params of exec_status.
type ExecStatusParams struct {
	ID           int64 `json:"id"`
	StdoutOffset int64 `json:"stdout_offset,omitempty"`
	StderrOffset int64 `json:"stderr_offset,omitempty"`
	// MaxBytes bounds the bytes returned per stream (default and maximum
	// max_output_bytes).
	MaxBytes int    `json:"max_bytes,omitempty"`
	Encoding string `json:"encoding,omitempty"` // "utf8" (default) or "base64"
	// WaitSeconds (at most 10) waits for new output or the exit before
	// answering, so a host following a command need not poll fast.
	WaitSeconds float64 `json:"wait_seconds,omitempty"`
}

// ExecStatusResult is the result of exec_status.
type ExecStatusResult struct {
	ID      int64    `json:"id"`
	PID     int      `json:"pid"`
	Command string   `json:"command"`
	Args    []string `json:"args"`
	Running bool     `json:"running"`
	// ExitCode is set once exited: the status, or 128+signal (as
	// exec_command reports a killed command); Signal names the signal.
	ExitCode *int `json:"exit_code,omitempty"`
	Signal   *int `json:"signal,omitempty"`
	TimedOut bool `json:"timed_out"`
	Killed   bool `json:"killed"`
	// StartedAt is the start, in Unix seconds; DurationMS the run time so
	// far or in all.
	StartedAt  int64  `json:"started_at"`
	DurationMS int64  `json:"duration_ms"`
	Encoding   string `json:"encoding"`
	Stdout     Stream `json:"stdout"`
	Stderr     Stream `json:"stderr"`
	// Complete: the command has exited and this reply carries the end of
	// both streams; a follower stops.
	Complete bool `json:"complete"`
}

// Stream is a piece of a background command's output stream.
type Stream struct {
	// Data are the bytes from Offset to NextOffset, encoded.
	Data string `json:"data"`
	// Offset is where Data starts in the stream: the requested offset, or
	// later when Lost bytes before it are no longer kept.
	Offset int64 `json:"offset"`
	// NextOffset is the offset to ask next.
	NextOffset int64 `json:"next_offset"`
	Lost       int64 `json:"lost"`
	// Total is how many bytes the command has written so far.
	Total int64 `json:"total"`
	// EOF: the stream has ended and NextOffset is its end.
	EOF bool `json:"eof"`
	// Captured is false for a stream not captured (capture_output false,
	// or stderr with merge_output).
	Captured bool `json:"captured"`
}

// ExecKillParams are the params of exec_kill.
type ExecKillParams struct {
	ID int64 `json:"id"`
}

// ExecKillResult is the result of exec_kill.
type ExecKillResult struct {
	ID int64 `json:"id"`
	// Killed is false when the command had exited already.
	Killed bool `json:"killed"`
}

// FileReadChunkResult is the result of file_read with "offset" or
// "length" (a chunk).
type FileReadChunkResult struct {
	Content   string `json:"content"`
	SizeBytes int64  `json:"size_bytes"`
	Encoding  string `json:"encoding"`
	Offset    int64  `json:"offset"`
	// FileSize is the file's size when the chunk was read.
	FileSize int64 `json:"file_size"`
	// EOF: the chunk reaches the end of the file.
	EOF bool `json:"eof"`
}

// FileWriteChunkResult is the result of file_write with "offset" (a
// chunk of an upload).
type FileWriteChunkResult struct {
	BytesWritten int64  `json:"bytes_written"`
	Path         string `json:"path"`
	UploadID     string `json:"upload_id"`
	// SizeBytes is the upload's size after this chunk.
	SizeBytes int64 `json:"size_bytes"`
	// Committed: the upload replaced the file at Path.
	Committed bool   `json:"committed"`
	Aborted   bool   `json:"aborted,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
}

// FileStatParams are the params of file_stat.
type FileStatParams struct {
	Path   string `json:"path"`
	SHA256 bool   `json:"sha256,omitempty"`
}

// FileStatResult is the result of file_stat.
type FileStatResult struct {
	Path string `json:"path"`
	// Type is file, directory, symlink, fifo, socket, char_device or
	// block_device.
	Type      string `json:"type"`
	SizeBytes int64  `json:"size_bytes"`
	// Mode is the permission bits in octal ("0644"), with setuid, setgid
	// and sticky as a fourth leading digit when set ("4755").
	Mode string `json:"mode"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	// MtimeNS is the modification time in nanoseconds since the epoch.
	MtimeNS int64 `json:"mtime_ns"`
	// SHA256 of the content, hex, for a regular file when asked.
	SHA256 string `json:"sha256,omitempty"`
}
