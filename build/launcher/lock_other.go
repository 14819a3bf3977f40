//go:build !unix

package launcher

// lockFile does not lock where there is no flock(2): concurrent builds of
// the builder into one directory are the caller's to avoid.
func lockFile(string) (func(), error) { return func() {}, nil }
