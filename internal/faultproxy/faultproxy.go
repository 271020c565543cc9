// Package faultproxy is a TCP proxy for fault tests, in the manner of
// Shopify's Toxiproxy: it sits on loopback between an application and a
// server (PostgreSQL, say) and, on command, stalls the traffic (a
// partition), refuses or blackholes new connections, resets open ones,
// delays replies, or loses the next reply.
//
// Each accepted connection is forwarded to the target by two goroutines,
// one per direction, each copying in chunks: a chunk is read, then (server
// to client only) held for the delay, then held while the proxy is
// stalled, then written, or discarded if a dropped reply is pending. One
// goroutine per direction means chunks are never reordered.
//
// A Proxy listens on 127.0.0.1 only and forwards only to a loopback
// target. Every goroutine it starts has ended when [Proxy.Close] returns.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// chunkSize is the most a pipe reads, and so forwards, at once.
const chunkSize = 32 << 10

// Proxy is a running fault proxy. Its methods may be called from any
// goroutine.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close; ends dials under way
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop, connection setups and pipes

	mu        sync.Mutex
	closed    bool
	stalled   chan struct{} // non-nil while stalled; closed by Heal
	refuse    bool
	blackhole bool
	delay     time.Duration
	dropIn    int // the dropIn-th next reply chunk is dropped; 0: none
	links     map[*link]struct{}
	held      map[net.Conn]struct{} // blackholed client connections
}

// Start listens on 127.0.0.1:0 and forwards each accepted connection to
// target, which must be a loopback IP address and port such as
// "127.0.0.1:5432" (a host name is refused). The proxy forwards faithfully
// until told otherwise; call [Proxy.Close] to stop it.
func Start(target string) (*Proxy, error) {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("faultproxy: target %q is not a loopback IP address", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		links:  map[*link]struct{}{},
		held:   map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the address the proxy listens on, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Stall partitions the proxy: no chunk is forwarded in either direction,
// on any connection open now or accepted later, until [Proxy.Heal]. The
// sockets stay open and what is sent waits in the proxy (a chunk already
// read waits too); a connection accepted during the stall is still
// connected to the target, and only its bytes wait. A chunk whose write had begun when Stall was called may
// still arrive; every other chunk waits. Stall while stalled does nothing.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
}

// Heal ends a stall: what waited is forwarded, in the order it was read on
// each connection and direction. Heal when not stalled does nothing.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
}

// Refuse, while on, makes the proxy close each new connection as soon as
// it is accepted, with a reset, as a server that refuses connections
// would; the client's first read fails. Open connections are untouched.
// Refuse takes precedence over [Proxy.Blackhole].
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = on
}

// Blackhole, while on, makes the proxy accept each new connection and
// never answer it nor forward it: a server that accepts and then says
// nothing. Such a connection stays open until Blackhole(false), which
// closes those it held, or [Proxy.ResetAll] or [Proxy.Close]. Open
// forwarded connections are untouched.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole = on
	if !on {
		for c := range p.held {
			_ = c.Close()
			delete(p.held, c)
		}
	}
}

// ResetAll resets every connection open now, forwarded or blackholed: both
// its sockets are closed with SO_LINGER 0, so that the client and the
// target each see a reset (ECONNRESET) rather than an orderly close. What
// waited in a stall on those connections is lost. The proxy goes on
// accepting; faults that are set stay set.
func (p *Proxy) ResetAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		p.teardownLocked(l, true)
	}
	for c := range p.held {
		reset(c)
		delete(p.held, c)
	}
}

// Delay holds each chunk from the server to the client at least d after
// the proxy read it, before writing it: latency on replies. Chunks keep
// their order, and each is held in turn, so a reply that arrives in
// several chunks may take a multiple of d. Delay(0) removes the delay for
// chunks read afterwards.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = max(d, 0)
}

// DropNextReply loses a reply: the next chunk the server sends to a
// client, on whichever connection it comes first, is discarded and that
// connection is closed (both sides, an orderly close), as if the reply was
// lost after the statement reached the server. Other connections are
// untouched. Only one chunk is dropped however often DropNextReply is
// called before it comes.
func (p *Proxy) DropNextReply() { p.DropReply(1) }

// DropReply is DropNextReply for the n-th server→client chunk from now (1
// is the next), on whichever connection it comes: a test can let a
// statement's reply through and lose the next one (a COMMIT's, say).
func (p *Proxy) DropReply(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropIn = n
}

// Conns returns the number of client connections the proxy holds open:
// those it forwards and those it blackholes.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links) + len(p.held)
}

// Close stops listening, closes every connection and waits until every
// goroutine the proxy started has ended. It returns the error of closing
// the listener; calls after the first do nothing and return nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancel()
	err := p.ln.Close()
	for l := range p.links {
		p.teardownLocked(l, false)
	}
	for c := range p.held {
		_ = c.Close()
		delete(p.held, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // the listener was closed (by Close) or is broken
		}
		p.mu.Lock()
		switch {
		case p.closed:
			_ = c.Close()
		case p.refuse:
			reset(c)
		case p.blackhole:
			p.held[c] = struct{}{}
		default:
			p.wg.Add(1)
			go p.connect(c)
		}
		p.mu.Unlock()
	}
}

// connect dials the target for the client connection c and starts its
// pipes. A target that cannot be reached resets c.
func (p *Proxy) connect(c net.Conn) {
	defer p.wg.Done()
	var d net.Dialer
	s, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		reset(c)
		return
	}
	l := &link{client: c, server: s, done: make(chan struct{}), open: 2}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		_ = s.Close()
		return
	}
	p.links[l] = struct{}{}
	p.wg.Add(2)
	go p.pipe(l, c, s, false)
	go p.pipe(l, s, c, true)
}

// link is one forwarded connection: the client's socket and the proxy's
// socket to the target.
type link struct {
	client, server net.Conn
	done           chan struct{} // closed by teardown; wakes waiting pipes
	open           int           // pipes still running; guarded by Proxy.mu
	gone           bool          // torn down; guarded by Proxy.mu
}

// teardownLocked closes both sockets of l, resetting them if rst, and
// forgets l. It does nothing if l is already torn down. p.mu must be held.
func (p *Proxy) teardownLocked(l *link, rst bool) {
	if l.gone {
		return
	}
	l.gone = true
	close(l.done)
	delete(p.links, l)
	if rst {
		reset(l.client)
		reset(l.server)
	} else {
		_ = l.client.Close()
		_ = l.server.Close()
	}
}

func (p *Proxy) teardown(l *link, rst bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.teardownLocked(l, rst)
}

// pipe copies src to dst, chunk by chunk, applying the proxy's faults;
// reply is true for the server-to-client direction. An end of file from
// src is passed on as a half close of dst; the link is torn down when both
// directions have ended, or at once on any other error (a reset from src
// is passed on as a reset).
func (p *Proxy) pipe(l *link, src, dst net.Conn, reply bool) {
	defer p.wg.Done()
	buf := make([]byte, chunkSize)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			read := time.Now()
			if reply && !p.hold(l, read) {
				return
			}
			drop, ok := p.pass(l, reply)
			if !ok {
				return
			}
			if drop {
				p.teardown(l, false)
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				p.teardown(l, false)
				return
			}
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, io.EOF) {
			p.teardown(l, errors.Is(err, syscall.ECONNRESET))
			return
		}
		p.mu.Lock()
		l.open--
		if l.open == 0 {
			p.teardownLocked(l, false)
		} else if tc, ok := dst.(*net.TCPConn); ok && !l.gone {
			_ = tc.CloseWrite()
		}
		p.mu.Unlock()
		return
	}
}

// hold waits until the proxy's delay has passed since read. It returns
// false if l was torn down meanwhile.
func (p *Proxy) hold(l *link, read time.Time) bool {
	p.mu.Lock()
	d := p.delay
	p.mu.Unlock()
	wait := d - time.Since(read)
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.done:
		return false
	}
}

// pass waits while the proxy is stalled and then claims a pending dropped
// reply if reply is set. It returns ok false if l was torn down meanwhile.
func (p *Proxy) pass(l *link, reply bool) (drop, ok bool) {
	for {
		p.mu.Lock()
		if l.gone {
			p.mu.Unlock()
			return false, false
		}
		stalled := p.stalled
		if stalled == nil {
			if reply && p.dropIn > 0 {
				p.dropIn--
				drop = p.dropIn == 0
			}
			p.mu.Unlock()
			return drop, true
		}
		p.mu.Unlock()
		select {
		case <-stalled:
		case <-l.done:
			return false, false
		}
	}
}

// reset closes c so that its peer sees a reset rather than an end of file.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
