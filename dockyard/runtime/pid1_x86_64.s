# The --init reaper for x86_64 Linux (dockyard/runtime/pid1.py runs it; its
# docstring says why and how). Assembled with:
#     as --64 -o pid1.o pid1_x86_64.s && objcopy -O binary -j .text pid1.o pid1.bin
# pid1.py holds the bytes (a test re-assembles this file and compares), wraps them in a
# 2-segment ELF header, patches the two slots at the end (the signals to wait for, the
# command's pid) and execs the result from a sealed memfd. Position-independent; it
# writes nothing but its stack.
        .intel_syntax noprefix
        .text
        .globl _start
_start:
        mov     eax, 157                # prctl(PR_SET_DUMPABLE, 0): first of all
        mov     edi, 4
        xor     esi, esi
        syscall
        mov     eax, 157                # prctl(PR_SET_NAME, "docker-init")
        mov     edi, 15
        lea     rsi, [rip + name]
        syscall
        mov     eax, 3                  # close(3): the command waits for this EOF, so it
        mov     edi, 3                  # never sees pid 1 under its memfd name
        syscall
        mov     ebx, DWORD PTR [rip + child]
        xor     r13d, r13d              # r13: the command has exited; r12: its status
        sub     rsp, 256                # siginfo at [rsp], a wait status at [rsp + 128]
wait:
        mov     eax, 128                # rt_sigtimedwait(&waitset, &info, NULL, 8)
        lea     rdi, [rip + waitset]
        mov     rsi, rsp
        xor     edx, edx
        mov     r10d, 8
        syscall
        cmp     eax, 17                 # SIGCHLD: reap
        je      reap
        test    eax, eax
        jle     wait                    # an error: wait again
        mov     esi, eax                # any other signal: kill(command, signal)
        mov     edi, ebx
        mov     eax, 62
        syscall
        jmp     wait
reap:
        mov     eax, 61                 # wait4(-1, &status, WNOHANG, NULL)
        mov     edi, -1
        lea     rsi, [rsp + 128]
        mov     edx, 1
        xor     r10d, r10d
        syscall
        test    eax, eax
        jle     reaped                  # nothing more to reap now (0), or no child (< 0)
        cmp     eax, ebx
        jne     reap                    # an orphan: reaped, that is all
        mov     ecx, DWORD PTR [rsp + 128]
        mov     edx, ecx
        and     edx, 0x7f               # killed by signal n: 128 + n
        jz      exited
        lea     r12d, [rdx + 128]
        jmp     done
exited:
        mov     r12d, ecx               # exited: (status >> 8) & 0xff
        shr     r12d, 8
        and     r12d, 0xff
done:
        mov     r13d, 1
        jmp     reap
reaped:
        test    r13d, r13d
        jz      wait
        mov     eax, 231                # exit_group(the command's status)
        mov     edi, r12d
        syscall
        hlt
name:
        .asciz  "docker-init"
        .balign 8
waitset:                                # patched: the signals to wait for (bit n-1: signal n)
        .quad   0
child:                                  # patched: the command's pid
        .long   0
