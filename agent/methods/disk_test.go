package methods

import "testing"

func TestUsedPercent(t *testing.T) {
	tests := []struct {
		used, avail uint64
		want        float64
	}{
		{0, 0, 0}, {0, 100, 0}, {100, 0, 100}, {1, 99, 1}, {1, 199, 1}, {2, 199, 1}, {50, 50, 50},
		{1, 1000000, 1}, {999, 1, 100}, {1 << 62, 1 << 62, 50}, {1<<64 - 1, 1<<64 - 1, 50}, {1<<64 - 1, 0, 100}, {1, 1<<64 - 2, 1},
	}
	for _, tt := range tests {
		if got := usedPercent(tt.used, tt.avail); got != tt.want {
			t.Errorf("usedPercent(%d, %d) = %v, want %v", tt.used, tt.avail, got, tt.want)
		}
	}
}
