// Package methods implements every protocol 1.0 method of the agent: the
// handlers the server dispatches to. Each method group has its own file; the
// security decisions (paths, commands) live in agent/policy. It is also the
// back end of the guest operations (fsfreeze, time, users, stats, disks,
// accounts: guestops.go), typed methods of Service that protocol 1.1's
// handlers (guestops_rpc.go) and the QEMU guest agent dialect (agent/qga)
// share.
//
// Every handler decodes its params strictly (an unknown field is -32602 and
// names the field), checks every limit before any side effect, and returns
// *protocol.Error values with the codes of the wire contract.
package methods

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/jsonscan"
	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// Options configures a Service. The zero value is the real machine.
type Options struct {
	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
	// Power performs shutdown and reboot after the reply has been written;
	// nil means the real one (init system, then the reboot(2) syscall).
	Power PowerAction
	// HostRoot prefixes the files the information methods read (/proc,
	// /sys, /etc/os-release, /usr/lib/os-release); "" means "/". Tests point
	// it at a fake tree.
	HostRoot string
	// SearchDirs replaces the fixed system PATH of exec_command (tests only);
	// nil means policy.SystemPATH.
	SearchDirs []string
}

// Service holds the configuration and policies the handlers share.
type Service struct {
	cfg      *config.Config
	log      *slog.Logger
	power    PowerAction
	hostRoot string
	read     *policy.Paths
	write    *policy.Paths
	commands *policy.Commands

	// guest is the state of the guest operations (fsfreeze, time,
	// accounts: guestops.go).
	guest guestState

	// jobs are the background commands of both dialects (process.go).
	jobs jobTable
	// uploads are the chunked file_writes in progress (transfer.go).
	uploads    uploadTable
	uploadIdle time.Duration

	// statfs is unix.Statfs; tests replace it.
	statfs statfsFunc
	// fileTimeout bounds each file_read and file_write (withFileDeadline);
	// stuckFileOps counts those still running after it.
	fileTimeout  time.Duration
	stuckFileOps atomic.Int32
	// statfsTimeout bounds statfs of one mount point; statfsBusy holds the
	// mount points whose statfs is still running after it.
	statfsTimeout time.Duration
	statfsBusy    sync.Map
	// sys caches what get_system_info reads that changes only with a
	// reboot or a file change (systeminfo_cache_linux.go).
	sys sysInfoCache
	// serials caches the disk serials sysfs reports, keyed by the disk's
	// sysfs node (serialcache_linux.go).
	serials serialCache
	// beforeRename, when set (tests only), runs after the temporary file of
	// a file_write is complete and before it replaces the target.
	beforeRename func(tmpName string) error
}

// New returns the service for cfg. cfg must be valid (config.Load/Parse).
func New(cfg *config.Config, opts Options) *Service {
	s := &Service{
		cfg:      cfg,
		log:      opts.Logger,
		power:    opts.Power,
		hostRoot: opts.HostRoot,
		read:     policy.NewPaths("allowed_read_paths", cfg.AllowedReadPaths),
		write:    policy.NewPaths("allowed_write_paths", cfg.AllowedWritePaths),
		commands: policy.NewCommands(cfg.CommandWhitelistEnabled, cfg.CommandWhitelist, opts.SearchDirs),
		statfs:   defaultStatfs,

		fileTimeout:   defaultFileTimeout,
		uploadIdle:    defaultUploadIdle,
		statfsTimeout: defaultStatfsTimeout,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.hostRoot == "" {
		s.hostRoot = "/"
	}
	if s.power == nil {
		s.power = newSystemPower(s.log)
	}
	s.initGuest()
	return s
}

// Handlers returns the handler of every protocol method the configuration
// does not disable; the server answers -32601 for the others.
func (s *Service) Handlers() map[string]server.Handler {
	all := s.allHandlers()
	out := make(map[string]server.Handler, len(all))
	for name, h := range all {
		if !s.cfg.MethodDisabled(name) {
			out[name] = h
		}
	}
	return out
}

// NonBlocking names the methods whose handlers never block (no I/O beyond
// memory): the server may answer them on its reading goroutine
// (server.Options.Inline).
func (s *Service) NonBlocking() map[string]bool {
	return map[string]bool{
		protocol.MethodPing:         true,
		protocol.MethodSync:         true,
		protocol.MethodGetAgentInfo: true,
	}
}

func (s *Service) allHandlers() map[string]server.Handler {
	all := map[string]server.Handler{
		protocol.MethodPing:           s.ping,
		protocol.MethodGetAgentInfo:   s.agentInfo,
		protocol.MethodGetSystemInfo:  s.systemInfo,
		protocol.MethodGetNetworkInfo: s.networkInfo,
		protocol.MethodGetDiskUsage:   s.diskUsage,
		protocol.MethodExecCommand:    s.execCommand,
		protocol.MethodFileRead:       s.fileRead,
		protocol.MethodFileWrite:      s.fileWrite,
		protocol.MethodShutdown:       s.shutdown,
		protocol.MethodReboot:         s.reboot,
		protocol.MethodSync:           s.sync,
	}
	// Protocol 1.1 (methods11, per OS): background commands
	// (exec_start.go), file_stat (transfer.go) and the guest operations
	// (guestops_rpc.go).
	maps.Copy(all, s.methods11())
	return all
}

// capabilities lists the enabled methods in protocol order.
func (s *Service) capabilities() []string {
	out := []string{}
	all := s.allHandlers()
	for _, m := range append(slices.Clip(protocol.Methods), protocol.Methods11...) {
		if !s.cfg.MethodDisabled(m) && all[m] != nil {
			out = append(out, m)
		}
	}
	return out
}

// decodeParams decodes params into dst strictly. Absent or null params, and
// an empty array, mean "no params" (all defaults). Anything else must be a
// single JSON object whose fields dst knows, with the right types.
func decodeParams(params json.RawMessage, dst any) error {
	trimmed := bytes.TrimSpace(params)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil
	}
	if trimmed[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(trimmed, &arr); err == nil && len(arr) == 0 {
			return nil
		}
		return invalidParams("params must be an object with named members, not an array")
	}
	if trimmed[0] != '{' {
		return invalidParams("params must be an object")
	}
	if name, dup := jsonscan.DuplicateMember(trimmed); dup {
		return invalidParams("field %q given twice", name)
	}
	// Unknown fields are found from the top-level keys alone (values are
	// skipped, not copied), then the object is decoded straight from the
	// request's bytes: a json.Decoder would buffer another copy of a
	// multi-megabyte file_write.
	var keys map[string]skipValue
	if err := json.Unmarshal(trimmed, &keys); err != nil {
		return invalidParams("%s", describeDecodeError(err))
	}
	known := fieldNames(dst)
	for k := range keys {
		if !known[k] {
			return invalidParams("unknown field %q", k)
		}
	}
	if err := json.Unmarshal(trimmed, dst); err != nil {
		return invalidParams("%s", describeDecodeError(err))
	}
	return nil
}

// skipValue accepts any JSON value without keeping it.
type skipValue struct{}

func (*skipValue) UnmarshalJSON([]byte) error { return nil }

// fieldNames returns the JSON names of the fields of the struct dst points
// to. Names must match exactly (encoding/json alone would also accept "Path"
// for "path").
func fieldNames(dst any) map[string]bool {
	t := reflect.TypeOf(dst).Elem()
	names := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names[name] = true
	}
	return names
}

func describeDecodeError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("field %q: wrong type: got JSON %s, want %s", te.Field, te.Value, jsonKind(te.Type.Kind().String()))
		}
		return fmt.Sprintf("wrong type: got JSON %s", te.Value)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return "unknown field " + f
	}
	return strings.TrimPrefix(msg, "json: ")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "int32", "uint64":
		return "an integer"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "ptr":
		return "a value of the documented type"
	}
	return goKind
}

func invalidParams(format string, args ...any) *protocol.Error {
	return protocol.Errorf(protocol.CodeInvalidParams, "invalid params: "+format, args...)
}

// noParams rejects params for methods that take none (unknown fields are
// -32602, like everywhere else).
func noParams(params json.RawMessage) error {
	return decodeParams(params, &struct{}{})
}
