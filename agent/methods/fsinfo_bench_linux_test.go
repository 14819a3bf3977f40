package methods

import (
	"context"
	"testing"
)

// BenchmarkFSInfo measures get_fsinfo/guest-get-fsinfo's back end on this
// machine's mounts and disks.
func BenchmarkFSInfo(b *testing.B) {
	s := New(seedConfig(b), Options{})
	ctx := context.Background()
	for b.Loop() {
		if _, err := s.FSInfo(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
