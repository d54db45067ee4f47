; The e2e disk image: a boot sector that proves it ran from this client's
; own volume. Assembled with `nasm -f bin` into the whole raw image (8 MiB: iPXE guesses 255 heads and 63 sectors per track, and a disk smaller than one such cylinder cannot be read by CHS).
;
;   LBA 0        stage 1: loads stage 2 (LBA 1-2) through INT 13h AH=42h
;   LBA 1-2      stage 2 (below)
;   LBA 64       the marker sector: zero in the image; each boot writes
;                "DLSMARK1", a boot count and a nonce (RDTSC) to it
;   LBA 2048     a payload sector (1 MiB into the disk) stage 2 reads back
;
; Stage 2 prints to COM1 (0x3f8), one line each:
;
;   DLS-E2E stage2 drive=00000080
;   DLS-PAYLOAD-OK
;   DLS-MARK seen=<count> prev=<nonce>      what earlier boots left (0 0: none)
;   DLS-READY                               then waits up to ~2 s for a byte on COM1
;                                           (or a key: SeaBIOS's serial console)
;                                           (a test may act here: kill a plugin)
;   DLS-WROTE seen=<count+1> nonce=<nonce>  the marker was written and read back
;   DLS-EXIT
;
; and leaves QEMU through isa-debug-exit (port 0xf4): status (v<<1)|1, so
; 0x21 = 67 success, 0x22 = 69 a read failed, 0x23 = 71 the payload is
; wrong, 0x24 = 73 the marker write (or its read-back) failed.
;
; Numbers are 8 hex digits.

bits 16
org 0x7c00

STAGE2      equ 0x7e00
BUF         equ 0x9000
MARK_LBA    equ 64
PAYLOAD_LBA equ 2048

start:
	cli
	xor ax, ax
	mov ds, ax
	mov es, ax
	mov ss, ax
	mov sp, 0x7c00
	sti
	cld
	mov [drive], dl
	; stage 2: 2 sectors from LBA 1 to 0x7e00
	mov word [dap.count], 2
	mov word [dap.off], STAGE2
	mov dword [dap.lba], 1
	mov ah, 0x42
	call disk
	jc fail_read
	jmp STAGE2

; disk: INT 13h function AH with the DAP, on the boot drive. CF on error.
disk:
	mov si, dap
	mov dl, [drive]
	int 0x13
	ret

fail_read:
	mov al, 0x22
exit:
	mov dx, 0xf4
	out dx, al
	hlt
	jmp exit

drive: db 0
align 4
dap:
	db 16, 0
.count: dw 0
.off:   dw 0
.seg:   dw 0
.lba:   dq 0

	times 510-($-$$) db 0
	dw 0xaa55

; ---------------------------------------------------------------- stage 2
stage2:
	mov si, s_stage2
	call puts
	movzx eax, byte [drive]
	call puthex
	call crlf

	; the payload, 1 MiB into the disk
	mov dword [dap.lba], PAYLOAD_LBA
	call read1
	jc fail_read
	mov si, BUF
	mov di, payload_sig
	mov cx, payload_len
	repe cmpsb
	jne fail_payload
	mov si, s_payload
	call puts
	call crlf

	; what earlier boots wrote
	mov dword [dap.lba], MARK_LBA
	call read1
	jc fail_read
	xor eax, eax
	mov [count], eax
	mov [prev], eax
	mov si, BUF
	mov di, mark_sig
	mov cx, 8
	repe cmpsb
	jne .fresh
	mov eax, [BUF+8]
	mov [count], eax
	mov eax, [BUF+12]
	mov [prev], eax
.fresh:
	mov si, s_mark
	call puts
	mov eax, [count]
	call puthex
	mov si, s_prev
	call puts
	mov eax, [prev]
	call puthex
	call crlf

	mov si, s_ready
	call puts
	call crlf
	call waitkey

	; write the marker: signature, count+1, a fresh nonce
	rdtsc
	xor eax, edx
	mov [nonce], eax
	mov di, BUF
	mov cx, 512
	xor al, al
	rep stosb
	mov si, mark_sig
	mov di, BUF
	mov cx, 8
	rep movsb
	mov eax, [count]
	inc eax
	mov [count], eax
	mov [BUF+8], eax
	mov eax, [nonce]
	mov [BUF+12], eax
	mov dword [dap.lba], MARK_LBA
	mov word [dap.count], 1
	mov word [dap.off], BUF
	mov ax, 0x4300            ; AL=0: write without verify
	call disk
	jc fail_write
	; read it back
	mov dword [BUF+12], 0
	call read1
	jc fail_write
	mov eax, [BUF+12]
	cmp eax, [nonce]
	jne fail_write
	mov si, s_wrote
	call puts
	mov eax, [count]
	call puthex
	mov si, s_nonce
	call puts
	mov eax, [nonce]
	call puthex
	call crlf
	mov si, s_exit
	call puts
	call crlf
	mov al, 0x21
	jmp exit

fail_payload:
	mov al, 0x23
	jmp exit
fail_write:
	mov si, s_werr
	call puts
	call crlf
	mov al, 0x24
	jmp exit

; read1: one sector at [dap.lba] to BUF. CF on error.
read1:
	mov word [dap.count], 1
	mov word [dap.off], BUF
	mov ah, 0x42
	jmp disk

; waitkey: until a byte arrives on COM1, or about 2 s (36 BIOS ticks).
; Under -nographic, SeaBIOS's serial console reads COM1 itself and turns
; what arrives into keystrokes: the keyboard buffer (INT 16h) is polled
; too.
waitkey:
	push es
	xor ax, ax
	mov es, ax
	mov ebx, [es:0x46c]
.loop:
	mov dx, 0x3fd
	in al, dx
	test al, 1
	jnz .uart
	mov ah, 0x01
	int 0x16
	jnz .key
	mov eax, [es:0x46c]
	sub eax, ebx
	cmp eax, 36
	jae .done
	sti
	hlt                        ; the timer interrupt wakes us
	jmp .loop
.uart:
	mov dx, 0x3f8
	in al, dx
	jmp .done
.key:
	xor ah, ah
	int 0x16
.done:
	pop es
	ret

; puts: the NUL-terminated string at SI to COM1.
puts:
	lodsb
	test al, al
	jz .end
	call putc
	jmp puts
.end:
	ret

putc:
	push ax
	mov dx, 0x3fd
.wait:
	in al, dx
	test al, 0x20
	jz .wait
	pop ax
	mov dx, 0x3f8
	out dx, al
	ret

crlf:
	mov al, 13
	call putc
	mov al, 10
	jmp putc

; puthex: EAX as 8 hex digits.
puthex:
	mov cx, 8
.digit:
	rol eax, 4
	push eax
	and al, 0x0f
	add al, '0'
	cmp al, '9'
	jbe .out
	add al, 'a'-'9'-1
.out:
	push cx
	call putc
	pop cx
	pop eax
	loop .digit
	ret

s_stage2:  db 13, 10, "DLS-E2E stage2 drive=", 0
s_payload: db "DLS-PAYLOAD-OK", 0
s_mark:    db "DLS-MARK seen=", 0
s_prev:    db " prev=", 0
s_ready:   db "DLS-READY", 0
s_wrote:   db "DLS-WROTE seen=", 0
s_nonce:   db " nonce=", 0
s_werr:    db "DLS-WRITE-FAILED", 0
s_exit:    db "DLS-EXIT", 0
mark_sig:  db "DLSMARK1"
payload_sig: db "DLS-PAYLOAD at LBA 2048: this sector came from the image"
payload_len equ $-payload_sig

align 4
count: dd 0
prev:  dd 0
nonce: dd 0

	times 3*512-($-$$) db 0     ; stage 2 ends at LBA 2

; ---------------------------------------------------------------- data
	times PAYLOAD_LBA*512-($-$$) db 0
	db "DLS-PAYLOAD at LBA 2048: this sector came from the image"
	times (PAYLOAD_LBA+1)*512-($-$$) db 0
	times 8*1024*1024-($-$$) db 0
