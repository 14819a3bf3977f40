//go:build !unix

package pipeline

// lockDist does nothing where flock(2) does not exist: concurrent pipeline
// runs into one directory are then the caller's to avoid.
func lockDist(dist string) (func(), error) { return func() {}, nil }
