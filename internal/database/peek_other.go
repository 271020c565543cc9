//go:build !unix

package database

import "net"

// pending cannot peek on this platform: a connection the server ended
// while idle is found when the next statement is sent.
func pending(net.Conn) bool { return false }
