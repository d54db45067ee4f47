; The UEFI e2e payload: an EFI application (PE32+, x86-64), assembled
; with `nasm -f bin` and put at \EFI\BOOT\BOOTX64.EFI of the UEFI e2e
; image's FAT partition (lab.EFIImage). UEFI iPXE's sanboot loads it from
; the machine's clone, so it running proves the clone booted.
;
; It prints one line to COM1 (0x3f8), the machine's serial console,
; without any firmware call:
;
;   DLS-EFI-PAYLOAD ran from its SAN disk
;
; and leaves QEMU through isa-debug-exit (port 0xf4) with 0x21: status 67,
; the boot sector's success status. Elsewhere it returns EFI_SUCCESS.
;
; One section (.text, RVA 0x1000), no relocations: the code is position
; independent (RIP-relative), so the loader may place it anywhere.

bits 64
default rel

IMAGE_BASE equ 0x10000000
SECT_ALIGN equ 0x1000
FILE_ALIGN equ 0x200

mz:
	dw 'MZ'
	times 0x3c-($-mz) db 0
	dd pe - mz
pe:
	db 'PE', 0, 0
	dw 0x8664                       ; Machine: x86-64
	dw 1                            ; NumberOfSections
	dd 0, 0, 0                      ; TimeDateStamp, symbol table, symbols
	dw opt_end - opt                ; SizeOfOptionalHeader
	dw 0x0022                       ; executable, large address aware
opt:
	dw 0x20b                        ; PE32+
	db 0, 0                         ; linker version
	dd text_size                    ; SizeOfCode
	dd 0, 0                         ; initialized, uninitialized data
	dd SECT_ALIGN + (entry - text)  ; AddressOfEntryPoint
	dd SECT_ALIGN                   ; BaseOfCode
	dq IMAGE_BASE
	dd SECT_ALIGN, FILE_ALIGN
	dw 0, 0, 0, 0, 0, 0             ; OS, image, subsystem versions
	dd 0                            ; Win32VersionValue
	dd 2 * SECT_ALIGN               ; SizeOfImage: headers, .text
	dd FILE_ALIGN                   ; SizeOfHeaders
	dd 0                            ; CheckSum
	dw 10                           ; Subsystem: EFI application
	dw 0                            ; DllCharacteristics
	dq 0x10000, 0x1000, 0x10000, 0x1000 ; stack and heap reserve, commit
	dd 0                            ; LoaderFlags
	dd 16                           ; NumberOfRvaAndSizes
	times 16 dq 0                   ; data directories: none
opt_end:
	db '.text', 0, 0, 0
	dd SECT_ALIGN                   ; VirtualSize
	dd SECT_ALIGN                   ; VirtualAddress
	dd text_size                    ; SizeOfRawData
	dd FILE_ALIGN                   ; PointerToRawData
	dd 0, 0                         ; relocations, line numbers
	dw 0, 0
	dd 0x60000020                   ; code, execute, read
	times FILE_ALIGN-($-mz) db 0

text:
entry:
	lea rsi, [msg]
.next:
	lodsb
	test al, al
	jz .exit
	mov ah, al
	mov dx, 0x3fd                   ; line status: wait for an empty holding register
.wait:
	in al, dx
	test al, 0x20
	jz .wait
	mov al, ah
	mov dx, 0x3f8
	out dx, al
	jmp .next
.exit:
	mov al, 0x21
	out 0xf4, al                    ; isa-debug-exit: QEMU exits with 67
	xor eax, eax                    ; EFI_SUCCESS, where nothing listens there
	ret
msg:
	db 13, 10, 'DLS-EFI-PAYLOAD ran from its SAN disk', 13, 10, 0
	times FILE_ALIGN-(($-text) % FILE_ALIGN) db 0
text_end:
text_size equ text_end - text
