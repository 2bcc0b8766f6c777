package sipnet

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socketBacklog is the share of c's receive buffer the datagrams not read
// yet take (SO_MEMINFO: the receive queue's memory, skb overhead included,
// over the buffer's size), or 0 if the kernel does not tell.
func socketBacklog(c *net.UDPConn) float64 {
	if c == nil {
		return 0
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var mem [unix.SK_MEMINFO_VARS]uint32
	var errno unix.Errno
	err = rc.Control(func(fd uintptr) {
		n := uint32(unsafe.Sizeof(mem))
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem)), uintptr(unsafe.Pointer(&n)), 0)
	})
	if err != nil || errno != 0 || mem[unix.SK_MEMINFO_RCVBUF] == 0 {
		return 0
	}
	return float64(mem[unix.SK_MEMINFO_RMEM_ALLOC]) / float64(mem[unix.SK_MEMINFO_RCVBUF])
}
