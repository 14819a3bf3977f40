package vm

import (
	"runtime"
	"testing"
)

func TestEnvAccel(t *testing.T) {
	foreign := "arm64"
	if runtime.GOARCH == "arm64" {
		foreign = "amd64"
	}
	tests := []struct {
		env, arch, want string
	}{
		{"", runtime.GOARCH, "tcg"},
		{"tcg", runtime.GOARCH, "tcg"},
		{"kvm", runtime.GOARCH, "kvm"},
		{"kvm", foreign, "tcg"},
		{"tcg", foreign, "tcg"},
	}
	for _, tt := range tests {
		if got := envAccel(tt.env, tt.arch); got != tt.want {
			t.Errorf("envAccel(%q, %q) = %q, want %q", tt.env, tt.arch, got, tt.want)
		}
	}
}
