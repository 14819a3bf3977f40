package iso

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"
)

// ECMA-119 layout used by Normalize.
const (
	sectorSize = 2048
	pvdSector  = 16

	pvdSystemID     = 8   // 32 a-characters
	pvdRootRecord   = 156 // 34-byte directory record of the root
	pvdCreated      = 813 // 17-byte dates
	pvdModified     = 830
	pvdExpires      = 847
	pvdEffective    = 864
	recExtent       = 2  // both-endian uint32; little-endian half first
	recLength       = 10 // both-endian uint32
	recDate         = 18 // 7-byte date
	recFlags        = 25
	recIDLen        = 32
	recID           = 33
	flagDirectory   = 0x02
	systemIDContent = "LINUX"
)

// Normalize rewrites the build-dependent fields the kdomanski writer leaves in
// the image f: the primary volume descriptor's creation, modification and
// effective dates (time.Now() there) become t, its system identifier
// (runtime.GOOS of the builder) becomes "LINUX", and every directory record,
// the root's included, gets the recording date t (the writer leaves it zero,
// which a Linux guest shows as the year 1912).
func Normalize(f *os.File, t time.Time) error {
	t = t.UTC()
	if t.Year() < 1900 || t.Year() > 2155 {
		return fmt.Errorf("date %s is outside what ISO 9660 records (1900-2155)", t)
	}
	pvd := make([]byte, sectorSize)
	if _, err := f.ReadAt(pvd, pvdSector*sectorSize); err != nil {
		return fmt.Errorf("read primary volume descriptor: %w", err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return fmt.Errorf("sector %d is not a primary volume descriptor", pvdSector)
	}
	copy(pvd[pvdSystemID:pvdSystemID+32], fmt.Sprintf("%-32s", systemIDContent))
	vd := volumeDate(t)
	copy(pvd[pvdCreated:], vd)
	copy(pvd[pvdModified:], vd)
	copy(pvd[pvdEffective:], vd)
	rd := recordDate(t)
	copy(pvd[pvdRootRecord+recDate:], rd)
	if _, err := f.WriteAt(pvd, pvdSector*sectorSize); err != nil {
		return fmt.Errorf("write primary volume descriptor: %w", err)
	}

	type extent struct{ sector, length uint32 }
	root := pvd[pvdRootRecord:]
	queue := []extent{{binary.LittleEndian.Uint32(root[recExtent:]), binary.LittleEndian.Uint32(root[recLength:])}}
	seen := map[uint32]bool{}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d.sector] {
			continue
		}
		seen[d.sector] = true
		buf := make([]byte, d.length)
		if _, err := f.ReadAt(buf, int64(d.sector)*sectorSize); err != nil && err != io.EOF {
			return fmt.Errorf("read directory at sector %d: %w", d.sector, err)
		}
		for off := 0; off < len(buf); {
			n := int(buf[off])
			if n == 0 { // no record crosses a sector: skip to the next one
				off = (off/sectorSize + 1) * sectorSize
				continue
			}
			if n < recID+1 || off+n > len(buf) {
				return fmt.Errorf("bad directory record at sector %d offset %d", d.sector, off)
			}
			rec := buf[off : off+n]
			copy(rec[recDate:], rd)
			idLen := int(rec[recIDLen])
			self := idLen == 1 && (rec[recID] == 0 || rec[recID] == 1)
			if rec[recFlags]&flagDirectory != 0 && !self {
				queue = append(queue, extent{binary.LittleEndian.Uint32(rec[recExtent:]), binary.LittleEndian.Uint32(rec[recLength:])})
			}
			off += n
		}
		if _, err := f.WriteAt(buf, int64(d.sector)*sectorSize); err != nil {
			return fmt.Errorf("write directory at sector %d: %w", d.sector, err)
		}
	}
	return nil
}

// volumeDate is the 17-byte ECMA-119 8.4.26.1 form: digits and a zero
// offset from GMT.
func volumeDate(t time.Time) []byte {
	s := fmt.Sprintf("%04d%02d%02d%02d%02d%02d%02d", t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e7)
	return append([]byte(s), 0)
}

// recordDate is the 7-byte ECMA-119 9.1.5 form.
func recordDate(t time.Time) []byte {
	return []byte{byte(t.Year() - 1900), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0}
}
