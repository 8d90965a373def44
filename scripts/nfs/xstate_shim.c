/*
 * LD_PRELOAD shim for Debian's user-mode-linux 6.1 on hosts whose CPUs have
 * AVX-512 or AMX (large XSAVE areas).
 *
 * UML 6.1 saves a guest thread's FPU state with PTRACE_GETREGSET
 * (NT_X86_XSTATE) into a fixed 832-byte buffer (legacy + AVX) and restores it
 * with PTRACE_SETREGSET from that same buffer. The host kernel truncates the
 * GET without complaint but refuses a SET shorter than its whole XSAVE area
 * with EFAULT, so the guest's init dies at once ("userspace - ptrace set fp
 * regs failed, errno = 14", then "Attempted to kill init").
 *
 * This shim completes a short SET: it reads the traced process's whole area,
 * lays UML's bytes over its start and sets the whole. What UML saved (x87,
 * SSE, AVX and the XSAVE header) is restored exactly; the components past
 * its buffer (AVX-512, PKRU, AMX) keep the host process's live values, which
 * is what UML would do on a host where the SET succeeded. The guest init
 * tells glibc not to use AVX-512 so no guest thread depends on those.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

long ptrace(enum __ptrace_request req, ...)
{
	static ptrace_fn real;
	/* UML issues its ptrace calls from one host thread: a static buffer is
	 * safe, and UML's own stacks are too small for one this size. */
	static unsigned char whole_buf[1 << 16] __attribute__((aligned(64)));
	va_list ap;
	va_start(ap, req);
	pid_t pid = va_arg(ap, pid_t);
	void *addr = va_arg(ap, void *);
	void *data = va_arg(ap, void *);
	va_end(ap);
	if (!real)
		real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
	if (req == PTRACE_SETREGSET && (long)addr == NT_X86_XSTATE && data) {
		struct iovec *iov = data;
		struct iovec whole = { whole_buf, sizeof whole_buf };
		if (syscall(SYS_ptrace, PTRACE_GETREGSET, pid, addr, &whole) == 0 &&
		    iov->iov_len < whole.iov_len) {
			memcpy(whole_buf, iov->iov_base, iov->iov_len);
			return real(req, pid, addr, &whole);
		}
	}
	return real(req, pid, addr, data);
}
