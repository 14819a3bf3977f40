// Package filelock serialises processes that build into one directory
// (dist/, the distro image cache, the Wine root cache): Lock takes an
// exclusive advisory lock on a file and waits for its other holders, so a
// second mage run, or the tests of several packages that go test runs in
// parallel, wait instead of tripping over each other's files. The lock goes
// with the process: one that dies releases it. It uses the standard library
// alone, so that build/launcher, which the magefiles import, stays light.
package filelock
