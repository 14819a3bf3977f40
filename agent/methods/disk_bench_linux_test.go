package methods

import "testing"

// BenchmarkMountinfo is the per-call parsing work of get_disk_usage: read
// /proc/self/mountinfo into a kept buffer and parse it.
func BenchmarkMountinfo(b *testing.B) {
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		data, err := readFileInto("/proc/self/mountinfo", buf[:0])
		if err != nil {
			b.Fatal(err)
		}
		buf = data
		if _, err := parseMountinfo(data); err != nil {
			b.Fatal(err)
		}
	}
}
