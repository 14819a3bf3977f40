package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// codec turns calls into request lines and response lines back into results
// for one agent protocol. Both protocols carry one JSON message per line and
// echo the request id, so one client serves both.
type codec interface {
	// appendRequest appends the request line (with its trailing newline)
	// calling method with params (nil: none) under id.
	appendRequest(dst []byte, id uint64, method string, params any) ([]byte, error)
	// parseResponse decodes one response line (without its newline) into
	// result (nil: discard) and returns the id it answers. A protocol-level
	// error reply is returned as err, with the id still set.
	parseResponse(line []byte, result any) (id uint64, err error)
	// appendSync appends the bytes that resynchronise the stream with
	// token: the protocol's delimiter byte and sync request.
	appendSync(dst []byte, token uint64) []byte
	// parseSync checks the reply to appendSync's request.
	parseSync(line []byte, token uint64) error
}

// conn is one client connection to an agent's unix socket.
type conn struct {
	nc     *fdConn
	r      *bufio.Reader
	w      *bufio.Writer
	codec  codec
	nextID uint64
	wbuf   []byte // request encoding buffer, reused
	lbuf   []byte // long-line assembly buffer, reused
}

// dial connects to the unix socket at path and synchronises the stream.
func dial(ctx context.Context, path string, cd codec) (*conn, error) {
	nc, err := dialUnix(ctx, path)
	if err != nil {
		return nil, err
	}
	c := &conn{
		nc:     nc,
		r:      bufio.NewReaderSize(nc, 256<<10),
		w:      bufio.NewWriterSize(nc, 256<<10),
		codec:  cd,
		nextID: 1,
	}
	if err := c.sync(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("synchronise with %s: %w", path, err)
	}
	return c, nil
}

func (c *conn) Close() error { return c.nc.Close() }

// sync sends the protocol's resynchronisation request and skips everything
// up to its reply, as a host does after connecting.
func (c *conn) sync(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		if err := c.nc.setTimeout(max(time.Until(dl), time.Millisecond)); err != nil {
			return err
		}
		defer c.nc.setTimeout(0)
	}
	token := uint64(time.Now().UnixNano()) & (1<<53 - 1)
	if _, err := c.w.Write(c.codec.appendSync(nil, token)); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	for {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		// qemu-ga prefixes its guest-sync-delimited reply with 0xFF; lines
		// before the reply are stale answers and are dropped.
		if i := bytes.LastIndexByte(line, 0xFF); i >= 0 {
			line = line[i+1:]
		}
		if c.codec.parseSync(line, token) == nil {
			return nil
		}
	}
}

// readLine returns the next line without its newline. The slice is valid
// until the next read.
func (c *conn) readLine() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err == nil {
		return line[:len(line)-1], nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read response: %w", err)
	}
	c.lbuf = append(c.lbuf[:0], line...)
	for {
		line, err = c.r.ReadSlice('\n')
		c.lbuf = append(c.lbuf, line...)
		switch {
		case err == nil:
			return c.lbuf[:len(c.lbuf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("read response: %w", io.ErrUnexpectedEOF)
		default:
			return nil, fmt.Errorf("read response: %w", err)
		}
	}
}

// call sends one request and waits for its reply.
func (c *conn) call(method string, params, result any) error {
	id := c.nextID
	c.nextID++
	if err := c.send(id, method, params); err != nil {
		return err
	}
	line, err := c.readLine()
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	got, err := c.codec.parseResponse(line, result)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	if got != id {
		return fmt.Errorf("%s: reply for id %d, want %d", method, got, id)
	}
	return nil
}

// send writes one request.
func (c *conn) send(id uint64, method string, params any) error {
	var err error
	c.wbuf, err = c.codec.appendRequest(c.wbuf[:0], id, method, params)
	if err != nil {
		return fmt.Errorf("encode %s: %w", method, err)
	}
	if _, err := c.w.Write(c.wbuf); err != nil {
		return fmt.Errorf("send %s: %w", method, err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send %s: %w", method, err)
	}
	if cap(c.wbuf) > 1<<20 {
		c.wbuf = nil // do not keep a multi-megabyte request alive
	}
	return nil
}

// pipeline sends n parameterless calls of method on this one connection,
// keeping up to window requests in flight, and checks that every reply is a
// success for an id that was sent. Replies may arrive in any order.
func (c *conn) pipeline(n, window int, method string) error {
	reqs := make([][]byte, n)
	first := c.nextID
	for i := range reqs {
		var err error
		reqs[i], err = c.codec.appendRequest(nil, c.nextID, method, nil)
		if err != nil {
			return fmt.Errorf("encode %s: %w", method, err)
		}
		c.nextID++
	}
	credits := make(chan struct{}, window)
	werr := make(chan error, 1)
	go func() {
		for _, r := range reqs {
			// Requests go out in one write for as long as the window has
			// room; the buffer is flushed just before waiting for room.
			select {
			case credits <- struct{}{}:
			default:
				if err := c.w.Flush(); err != nil {
					werr <- err
					return
				}
				credits <- struct{}{}
			}
			if _, err := c.w.Write(r); err != nil {
				werr <- err
				return
			}
		}
		werr <- c.w.Flush()
	}()
	seen := make([]bool, n)
	for range n {
		line, err := c.readLine()
		if err != nil {
			return fmt.Errorf("%s pipeline: %w", method, err)
		}
		id, err := c.codec.parseResponse(line, nil)
		if err != nil {
			return fmt.Errorf("%s pipeline: %w", method, err)
		}
		if id < first || id >= first+uint64(n) || seen[id-first] {
			return fmt.Errorf("%s pipeline: unexpected reply id %d", method, id)
		}
		seen[id-first] = true
		<-credits
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("%s pipeline: send: %w", method, err)
	}
	return nil
}
