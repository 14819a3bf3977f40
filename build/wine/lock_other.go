//go:build !linux

package wine

import "errors"

// lockFile is unsupported off Linux, where the Wine root cannot be built
// anyway (mmdebstrap, unshare).
func lockFile(string) (func(), error) {
	return nil, errors.New("wine: building the Wine root needs Linux")
}
