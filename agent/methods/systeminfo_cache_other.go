//go:build !linux

package methods

// sysInfoCache is Linux's (systeminfo_cache_linux.go): elsewhere the system
// information is read each time.
type sysInfoCache struct{}
