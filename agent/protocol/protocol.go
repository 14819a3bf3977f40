// Package protocol defines the kvmmanager-agent wire contract, protocol 1.0:
// JSON-RPC 2.0 messages, one per line, the error codes, the method names and
// the JSON shapes of every method's params and result. The agent and the host
// client both use these types, so the two cannot drift apart.
//
// See agent/PROTOCOL.md for the full description.
package protocol

import (
	"encoding/json"
	"fmt"
)

// Version is the protocol version reported by get_agent_info.
const Version = "1.1.0"

// JSONRPCVersion is the value of the "jsonrpc" member of every message.
const JSONRPCVersion = "2.0"

// PortName is the virtio-serial port name the agent listens on in the guest.
const PortName = "org.kvmmanager.agent.0"

// ResyncByte, sent by a host, makes the agent discard any partial line
// (qemu-ga's convention); hosts send it before a sync request.
const ResyncByte = 0xFF

// Method names of protocol 1.0.
const (
	MethodPing           = "ping"
	MethodGetAgentInfo   = "get_agent_info"
	MethodGetSystemInfo  = "get_system_info"
	MethodGetNetworkInfo = "get_network_info"
	MethodGetDiskUsage   = "get_disk_usage"
	MethodExecCommand    = "exec_command"
	MethodFileRead       = "file_read"
	MethodFileWrite      = "file_write"
	MethodShutdown       = "shutdown"
	MethodReboot         = "reboot"
	MethodSync           = "sync"
)

// Error codes. The first five are JSON-RPC 2.0's; the rest are the agent's.
const (
	CodeParseError       = -32700
	CodeInvalidRequest   = -32600
	CodeMethodNotFound   = -32601
	CodeInvalidParams    = -32602
	CodeInternalError    = -32603
	CodeCommandFailed    = -32000
	CodePermissionDenied = -32001
	CodeNotFound         = -32002
	CodeTimeout          = -32003
)

// Request is a JSON-RPC 2.0 request as a host sends it. A request without an
// ID is a notification and gets no response.
type Request struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
	ID      json.RawMessage `json:"id,omitempty"`
}

// Response is a JSON-RPC 2.0 response. Exactly one of Result and Error is
// set. ID is the request's id, or null when the request could not be read.
type Response struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
}

// Error is a JSON-RPC error object. It implements error so that method
// handlers can return it with its code, and the host client returns it as
// the error of a failed call (hosts test with errors.As).
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("agent error %d: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithData returns a copy of e carrying v, JSON-encoded, as its data member.
// If v cannot be encoded, e is returned unchanged.
func (e *Error) WithData(v any) *Error {
	b, err := json.Marshal(v)
	if err != nil {
		return e
	}
	c := *e
	c.Data = b
	return &c
}

// Methods lists every method of protocol 1.0, in documentation order.
var Methods = []string{
	MethodPing, MethodGetAgentInfo, MethodGetSystemInfo, MethodGetNetworkInfo,
	MethodGetDiskUsage, MethodExecCommand, MethodFileRead, MethodFileWrite,
	MethodShutdown, MethodReboot, MethodSync,
}
