package methods

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"slices"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// utmpFile is where glibc's login records live (_PATH_UTMP).
const utmpFile = "/var/run/utmp"

// Layout of glibc's struct utmp on 64-bit Linux (x86_64, aarch64; the
// time fields are 32-bit there too, __WORDSIZE_TIME64_COMPAT32).
const (
	utmpSize       = 384
	utmpTypeOff    = 0  // short ut_type
	utmpUserOff    = 44 // char ut_user[32]
	utmpUserLen    = 32
	utmpTvSecOff   = 340 // int32 ut_tv.tv_sec
	utmpTvUsecOff  = 344 // int32 ut_tv.tv_usec
	utmpUserProces = 7   // USER_PROCESS
)

// Users returns the users logged in now (USER_PROCESS records of utmp),
// one entry per user with the earliest login time, in the order of their
// first record, as qemu-ga's guest-get-users. No utmp (musl systems, or a
// system without login records) means nobody.
func (s *Service) Users() ([]protocol.User, error) {
	p := s.hostPath(utmpFile)
	data, err := readSmallFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return []protocol.User{}, nil
		}
		return nil, wrapErr(nil, err, "failed to read %s", p)
	}
	return parseUtmp(data), nil
}

// parseUtmp decodes utmp records (a trailing partial record is ignored).
func parseUtmp(data []byte) []protocol.User {
	out := []protocol.User{}
	index := map[string]int{}
	le := binary.LittleEndian
	for off := 0; off+utmpSize <= len(data); off += utmpSize {
		r := data[off : off+utmpSize]
		if int16(le.Uint16(r[utmpTypeOff:])) != utmpUserProces {
			continue
		}
		name := r[utmpUserOff : utmpUserOff+utmpUserLen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if len(name) == 0 {
			continue
		}
		sec := int32(le.Uint32(r[utmpTvSecOff:]))
		usec := int32(le.Uint32(r[utmpTvUsecOff:]))
		t := float64(sec) + float64(usec)/1e6
		if i, ok := index[string(name)]; ok {
			out[i].LoginTime = min(out[i].LoginTime, t)
			continue
		}
		index[string(name)] = len(out)
		out = append(out, protocol.User{User: string(name), LoginTime: t})
	}
	return slices.Clip(out)
}

// utmpRecord builds one record (tests, and documentation of the layout).
func utmpRecord(typ int16, user string, sec, usec int32) []byte {
	r := make([]byte, utmpSize)
	le := binary.LittleEndian
	le.PutUint16(r[utmpTypeOff:], uint16(typ))
	copy(r[utmpUserOff:utmpUserOff+utmpUserLen], user)
	le.PutUint32(r[utmpTvSecOff:], uint32(sec))
	le.PutUint32(r[utmpTvUsecOff:], uint32(usec))
	return r
}
