//go:build !linux

package methods

// serialCache is Linux's (serialcache_linux.go): elsewhere disk serials are
// read each time.
type serialCache struct{}
