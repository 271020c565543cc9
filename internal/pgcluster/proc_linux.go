package pgcluster

import "syscall"

// serverProcAttr runs the server as cred and has the kernel stop it (fast
// shutdown) if this process dies without calling Stop.
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGINT}
}
