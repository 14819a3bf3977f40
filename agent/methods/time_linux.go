package methods

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// rtcDevice is the hardware clock hwclock(8) uses by default.
const rtcDevice = "/dev/rtc0"

// GetTime returns the system clock and the kernel's clock source.
func (s *Service) GetTime() protocol.TimeInfo {
	return protocol.TimeInfo{TimeNs: time.Now().UnixNano(), ClockSource: s.clockSource()}
}

// clockSource reads the current clock source from sysfs ("" when absent).
func (s *Service) clockSource() string {
	b, err := readSmallFile(s.hostPath("/sys/devices/system/clocksource/clocksource0/current_clocksource"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// SetTime sets the system clock. With timeNs it sets that time and then
// the hardware clock (RTC) to it, as qemu-ga does with "hwclock -w" (a
// missing RTC is no error then); without, it reads the RTC (UTC, or local
// time when /etc/adjtime says LOCAL) and sets the system clock from it, as
// "hwclock -s" does, e.g. after the host resumed a suspended guest.
func (s *Service) SetTime(ctx context.Context, timeNs *int64) (protocol.SetTimeResult, error) {
	if timeNs != nil {
		// Nanoseconds in an int64 reach 2262, which RTCs hold; before
		// the epoch is refused, as settimeofday(2) refuses it.
		t := time.Unix(0, *timeNs)
		if *timeNs < 0 {
			return protocol.SetTimeResult{}, opErr(ErrInvalidArgument, "Invalid time %d: before the epoch (1970-01-01 UTC)", *timeNs)
		}
		if err := s.guest.setClock(t); err != nil {
			return protocol.SetTimeResult{}, wrapErr(nil, err, "Failed to set time to guest")
		}
		res := protocol.SetTimeResult{TimeNs: time.Now().UnixNano(), Source: "request"}
		err := s.guest.writeRTC(s.rtcZone(time.Now()))
		switch {
		case err == nil:
			res.RTCUpdated = true
		case errors.Is(err, ErrUnsupported):
		default:
			s.log.Warn("set_time: system clock set, hardware clock not", "err", err)
		}
		return res, nil
	}
	rtc, err := s.guest.readRTC()
	if err != nil {
		return protocol.SetTimeResult{}, err
	}
	t := s.fromRTCZone(rtc)
	if err := s.guest.setClock(t); err != nil {
		return protocol.SetTimeResult{}, wrapErr(nil, err, "Failed to set time to guest")
	}
	return protocol.SetTimeResult{TimeNs: time.Now().UnixNano(), Source: "rtc"}, nil
}

// rtcLocal reports whether /etc/adjtime keeps the RTC in local time (its
// third line is "LOCAL"); UTC otherwise, hwclock's default.
func (s *Service) rtcLocal() bool {
	b, err := readSmallFile(s.hostPath("/etc/adjtime"))
	if err != nil {
		return false
	}
	lines := strings.Split(string(b), "\n")
	return len(lines) >= 3 && strings.TrimSpace(lines[2]) == "LOCAL"
}

// rtcZone converts t to the wall-clock fields the RTC holds.
func (s *Service) rtcZone(t time.Time) time.Time {
	if s.rtcLocal() {
		return t.In(s.localZone())
	}
	return t.UTC()
}

// fromRTCZone interprets the RTC's fields (returned as UTC) in its zone.
func (s *Service) fromRTCZone(t time.Time) time.Time {
	if !s.rtcLocal() {
		return t
	}
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, s.localZone())
}

func defaultSetClock(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// defaultReadRTC reads /dev/rtc0 (RTC_RD_TIME); the fields are returned
// as a UTC time.
func defaultReadRTC() (time.Time, error) {
	fd, err := unix.Open(rtcDevice, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
			return time.Time{}, wrapErr(ErrUnsupported, err, "no hardware clock (%s)", rtcDevice)
		}
		return time.Time{}, wrapErr(nil, err, "failed to open %s", rtcDevice)
	}
	defer unix.Close(fd)
	rt, err := unix.IoctlGetRTCTime(fd)
	if err != nil {
		return time.Time{}, wrapErr(nil, err, "failed to read the hardware clock %s", rtcDevice)
	}
	return rtcToTime(rt)
}

// rtcToTime converts struct rtc_time (years since 1900, months 0-11).
func rtcToTime(rt *unix.RTCTime) (time.Time, error) {
	if rt.Mon < 0 || rt.Mon > 11 || rt.Mday < 1 || rt.Mday > 31 || rt.Hour < 0 || rt.Hour > 23 ||
		rt.Min < 0 || rt.Min > 59 || rt.Sec < 0 || rt.Sec > 60 || rt.Year < 70 || rt.Year > math.MaxInt32-1900 {
		return time.Time{}, opErr(nil, "the hardware clock holds an invalid time: %d-%02d-%02d %02d:%02d:%02d",
			int(rt.Year)+1900, rt.Mon+1, rt.Mday, rt.Hour, rt.Min, rt.Sec)
	}
	return time.Date(int(rt.Year)+1900, time.Month(rt.Mon+1), int(rt.Mday), int(rt.Hour), int(rt.Min), int(rt.Sec), 0, time.UTC), nil
}

// timeToRTC converts t's wall-clock fields to struct rtc_time.
func timeToRTC(t time.Time) *unix.RTCTime {
	return &unix.RTCTime{
		Sec: int32(t.Second()), Min: int32(t.Minute()), Hour: int32(t.Hour()),
		Mday: int32(t.Day()), Mon: int32(t.Month()) - 1, Year: int32(t.Year() - 1900),
		Wday: int32(t.Weekday()), Yday: int32(t.YearDay() - 1),
	}
}

// defaultWriteRTC sets /dev/rtc0 (RTC_SET_TIME) to t's wall-clock fields.
func defaultWriteRTC(t time.Time) error {
	fd, err := unix.Open(rtcDevice, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
			return wrapErr(ErrUnsupported, err, "no hardware clock (%s)", rtcDevice)
		}
		return fmt.Errorf("open %s: %w", rtcDevice, err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlSetRTCTime(fd, timeToRTC(t)); err != nil {
		return fmt.Errorf("set the hardware clock %s: %w", rtcDevice, err)
	}
	return nil
}
