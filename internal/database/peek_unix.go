//go:build unix

package database

import (
	"errors"
	"net"
	"syscall"
)

// pending reports whether nc has bytes to read or its peer closed it,
// without waiting and without consuming anything.
func pending(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var perr error
	if err := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait
	}); err != nil {
		return true
	}
	switch {
	case errors.Is(perr, syscall.EAGAIN), errors.Is(perr, syscall.EWOULDBLOCK), errors.Is(perr, syscall.EINTR):
		return false // nothing to read: alive and quiet
	case perr != nil:
		return true // reset or broken
	}
	return true // n > 0: unsolicited data; n == 0: the peer closed it
}
