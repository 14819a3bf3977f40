package methods

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type fakeClock struct {
	set      []time.Time
	rtc      time.Time
	rtcErr   error
	rtcWrite []time.Time
}

func newTimeService(t *testing.T, files map[string]string) (*Service, *fakeClock) {
	t.Helper()
	s := newFakeHostService(t, files)
	c := &fakeClock{rtc: time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)}
	s.guest.setClock = func(tm time.Time) error { c.set = append(c.set, tm); return nil }
	s.guest.readRTC = func() (time.Time, error) { return c.rtc, c.rtcErr }
	s.guest.writeRTC = func(tm time.Time) error {
		if c.rtcErr != nil {
			return c.rtcErr
		}
		c.rtcWrite = append(c.rtcWrite, tm)
		return nil
	}
	return s, c
}

func TestSetTime(t *testing.T) {
	given := time.Date(2031, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()
	paris := func() *time.Location { l, _ := time.LoadLocation("Europe/Paris"); return l }()
	tests := []struct {
		name      string
		files     map[string]string
		timeNs    *int64
		rtcErr    error
		wantSet   time.Time
		wantRTC   string // wall clock written to the RTC, "" none
		wantErr   error
		wantSrc   string
		rtcUpdate bool
	}{
		{"given time, RTC in UTC", nil, &given, nil, time.Unix(0, given), "UTC", nil, "request", true},
		{"given time, no RTC is fine", nil, &given, wrapErr(ErrUnsupported, unix.ENOENT, "no hardware clock"), time.Unix(0, given), "", nil, "request", false},
		{"from the RTC (UTC)", nil, nil, nil, time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC), "", nil, "rtc", false},
		{"from the RTC in local time (adjtime LOCAL)", map[string]string{"etc/adjtime": "0.0 0 0\n0\nLOCAL\n"}, nil, nil,
			time.Date(2030, 5, 6, 7, 8, 9, 0, paris), "", nil, "rtc", false},
		{"no RTC", nil, nil, wrapErr(ErrUnsupported, unix.ENOENT, "no hardware clock (/dev/rtc0)"), time.Time{}, "", ErrUnsupported, "", false},
		{"negative", nil, ptr(int64(-5)), nil, time.Time{}, "", ErrInvalidArgument, "", false},
		{"latest int64 time", nil, ptr(int64(1<<63 - 1)), nil, time.Unix(0, 1<<63-1), "UTC", nil, "request", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range tt.files {
				files[k] = v
			}
			if tt.files["etc/adjtime"] != "" {
				data, err := readSmallFile("/usr/share/zoneinfo/Europe/Paris")
				if err != nil {
					t.Skip("no zoneinfo")
				}
				files["etc/localtime"] = string(data)
			}
			s, c := newTimeService(t, files)
			c.rtcErr = tt.rtcErr
			res, err := s.SetTime(context.Background(), tt.timeNs)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if len(c.set) != 0 {
					t.Errorf("clock set despite the error: %v", c.set)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(c.set) != 1 || !c.set[0].Equal(tt.wantSet) {
				t.Errorf("clock set to %v, want %v", c.set, tt.wantSet)
			}
			if res.Source != tt.wantSrc || res.RTCUpdated != tt.rtcUpdate {
				t.Errorf("result %+v, want source %q rtc_updated %v", res, tt.wantSrc, tt.rtcUpdate)
			}
			if tt.wantRTC != "" && (len(c.rtcWrite) != 1 || c.rtcWrite[0].Location().String() != tt.wantRTC) {
				t.Errorf("RTC written %v, want one write in %s", c.rtcWrite, tt.wantRTC)
			}
		})
	}
}

func TestRTCConversion(t *testing.T) {
	tm := time.Date(2024, 2, 29, 23, 59, 58, 0, time.UTC)
	rt := timeToRTC(tm)
	if rt.Year != 124 || rt.Mon != 1 || rt.Mday != 29 || rt.Yday != 59 || rt.Wday != 4 {
		t.Errorf("timeToRTC = %+v", rt)
	}
	back, err := rtcToTime(rt)
	if err != nil || !back.Equal(tm) {
		t.Errorf("rtcToTime(timeToRTC(t)) = %v, %v; want %v", back, err, tm)
	}
	for _, bad := range []unix.RTCTime{{Mon: 12, Mday: 1, Year: 124}, {Mon: 0, Mday: 0, Year: 124}, {Mon: 0, Mday: 1, Year: 60}, {Hour: 24, Mday: 1, Year: 124}} {
		if _, err := rtcToTime(&bad); err == nil {
			t.Errorf("rtcToTime(%+v): no error", bad)
		}
	}
}
