package lab

import (
	"encoding/binary"
	"testing"
)

// TestEFIImage: the UEFI image has an EFI system partition whose FAT16
// holds the payload at \EFI\BOOT\BOOTX64.EFI, read back through the
// directories and the FAT.
func TestEFIImage(t *testing.T) {
	file := make([]byte, 1500)
	for i := range file {
		file[i] = byte(i)
	}
	disk, err := efiDisk(file)
	if err != nil {
		t.Fatal(err)
	}
	if disk[510] != 0x55 || disk[446+4] != 0xef || binary.LittleEndian.Uint32(disk[446+8:]) != efiPartStart {
		t.Fatalf("MBR: %x", disk[446:512])
	}
	part := disk[efiPartStart*efiSector:]
	data := efiReserved + 2*efiFATSize + efiRootEnts*32/efiSector
	// Follow the path through the directories and the FAT.
	find := func(dir []byte, name string) (int, int) {
		for i := 0; i+32 <= len(dir); i += 32 {
			if string(dir[i:i+11]) == name {
				return int(binary.LittleEndian.Uint16(dir[i+26:])), int(binary.LittleEndian.Uint32(dir[i+28:]))
			}
		}
		t.Fatalf("%q not found", name)
		return 0, 0
	}
	cl := func(c int) []byte { return part[(data+c-2)*efiSector : (data+c-1)*efiSector] }
	c, _ := find(part[(efiReserved+2*efiFATSize)*efiSector:data*efiSector], "EFI        ")
	c, _ = find(cl(c), "BOOT       ")
	c, size := find(cl(c), "BOOTX64 EFI")
	var got []byte
	for ; c < 0xfff8; c = int(binary.LittleEndian.Uint16(part[efiReserved*efiSector+2*c:])) {
		got = append(got, cl(c)...)
	}
	if size != len(file) || string(got[:size]) != string(file) {
		t.Errorf("file read back: %d bytes, want %d, equal %v", size, len(file), string(got[:min(size, len(got))]) == string(file))
	}
}
