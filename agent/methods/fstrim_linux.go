package methods

import (
	"context"
	"errors"
	"io/fs"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Fstrim discards the unused blocks (FITRIM) of every local, writable,
// block-device backed file system, with minimum as the smallest free range
// worth discarding (0: all). Each file system gets its own result, as with
// qemu-ga: the bytes trimmed and the effective minimum, or an error text
// ("trim not supported" for file systems or devices without discard).
func (s *Service) Fstrim(ctx context.Context, minimum uint64) ([]protocol.FstrimPath, error) {
	if s.Frozen() {
		return nil, opErr(ErrFrozen, "file systems are frozen; thaw them before trimming")
	}
	all, err := s.readMounts()
	if err != nil {
		return nil, wrapErr(nil, err, "failed to list mounted file systems")
	}
	mounts := blockMounts(all, true)
	out := make([]protocol.FstrimPath, 0, len(mounts))
	// qemu-ga lists the results in reverse mount order.
	for _, m := range slices.Backward(mounts) {
		if err := ctx.Err(); err != nil {
			return nil, wrapErr(nil, err, "fstrim interrupted")
		}
		r := protocol.FstrimPath{Path: m.mountPoint}
		rng := fstrimRange{Start: 0, Len: ^uint64(0), Minlen: minimum}
		err := s.guest.fsIoctl(m.mountPoint, ioctlFITRIM, &rng)
		var pe *fs.PathError
		switch {
		case err == nil:
			r.Minimum, r.Trimmed = &rng.Minlen, &rng.Len
		case errors.As(err, &pe):
			r.Error = "failed to open: " + strerror(pe.Err)
		case errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP):
			r.Error = "trim not supported"
		default:
			r.Error = "failed to trim: " + strerror(err)
		}
		out = append(out, r)
	}
	return out, nil
}
