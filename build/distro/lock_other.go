//go:build !linux

package distro

import "errors"

// lockFile is unsupported off Linux, where the images cannot be built
// anyway (mmdebstrap, mkfs.ext4 -d).
func lockFile(string) (func(), error) {
	return nil, errors.New("distro: building test images needs Linux")
}
