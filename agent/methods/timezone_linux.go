package methods

import (
	"os"
	"strings"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Timezone returns the guest's time zone now: its abbreviation and offset
// east of UTC in seconds (qemu-ga's guest-get-timezone), plus the IANA name
// when /etc/localtime links into a zoneinfo directory or /etc/timezone
// names it.
func (s *Service) Timezone() protocol.Timezone {
	loc := s.localZone()
	zone, offset := time.Now().In(loc).Zone()
	return protocol.Timezone{Zone: zone, Name: s.zoneName(), Offset: offset}
}

// localZone is the guest's local zone: $TZ of the agent when set (as the C
// library does), else /etc/localtime under the host root, else UTC.
func (s *Service) localZone() *time.Location {
	if s.hostRoot == "/" {
		if _, ok := os.LookupEnv("TZ"); ok {
			return time.Local
		}
	}
	data, err := os.ReadFile(s.hostPath("/etc/localtime"))
	if err != nil {
		return time.UTC
	}
	loc, err := time.LoadLocationFromTZData("Local", data)
	if err != nil {
		return time.UTC
	}
	return loc
}

// zoneName finds the IANA name of the local zone, "" when unknown.
func (s *Service) zoneName() string {
	if s.hostRoot == "/" {
		if tz, ok := os.LookupEnv("TZ"); ok {
			if tz = strings.TrimPrefix(tz, ":"); tz != "" && !strings.HasPrefix(tz, "/") {
				return tz
			}
			return ""
		}
	}
	if target, err := os.Readlink(s.hostPath("/etc/localtime")); err == nil {
		if _, name, ok := strings.Cut(target, "zoneinfo/"); ok {
			return name
		}
	}
	if b, err := readSmallFile(s.hostPath("/etc/timezone")); err == nil {
		return strings.TrimSpace(string(b))
	}
	return ""
}
