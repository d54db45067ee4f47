package lab

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// The UEFI e2e image (EFIImage): an MBR with one EFI system partition
// (type 0xef) at 1 MiB, FAT16, holding \EFI\BOOT\BOOTX64.EFI, the
// payload assembled from e2e/testdata/efi-payload.asm. UEFI iPXE's
// sanboot looks for exactly that file on the SAN disk's file systems.
const (
	efiSector    = 512
	efiPartStart = 2048 // LBA
	efiPartSize  = 8192 // sectors: 4 MiB, enough clusters for FAT16
	efiRootEnts  = 512  // root directory entries (32 sectors)
	efiFATSize   = 32   // sectors per FAT: (8095 clusters + 2) * 2 bytes
	efiReserved  = 1
)

// EFIImage assembles the EFI payload with nasm and writes the UEFI e2e
// image to out (5 MiB, raw).
func EFIImage(root, out string) error {
	src := filepath.Join(root, "e2e", "testdata", "efi-payload.asm")
	bin := out + ".efi"
	if b, err := exec.Command("nasm", "-f", "bin", "-o", bin, src).CombinedOutput(); err != nil {
		return fmt.Errorf("nasm %s: %v\n%s", src, err, b)
	}
	payload, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	disk, err := efiDisk(payload)
	if err != nil {
		return err
	}
	return os.WriteFile(out, disk, 0o644)
}

// efiDisk is the whole disk holding file as \EFI\BOOT\BOOTX64.EFI.
func efiDisk(file []byte) ([]byte, error) {
	disk := make([]byte, (efiPartStart+efiPartSize)*efiSector)
	// MBR: one partition, not bootable by BIOS (UEFI reads the table).
	mbr := disk[:efiSector]
	binary.LittleEndian.PutUint32(mbr[440:], 0x444c5345) // disk signature
	p := mbr[446:462]
	p[0] = 0x00
	copy(p[1:4], []byte{0xfe, 0xff, 0xff}) // CHS: use the LBA fields
	p[4] = 0xef                            // EFI system partition
	copy(p[5:8], []byte{0xfe, 0xff, 0xff})
	binary.LittleEndian.PutUint32(p[8:], efiPartStart)
	binary.LittleEndian.PutUint32(p[12:], efiPartSize)
	mbr[510], mbr[511] = 0x55, 0xaa

	part := disk[efiPartStart*efiSector:]
	rootDir := efiReserved + 2*efiFATSize
	data := rootDir + efiRootEnts*32/efiSector
	clusters := efiPartSize - data // one sector per cluster
	if clusters < 4085 || (clusters+2)*2 > efiFATSize*efiSector {
		return nil, fmt.Errorf("EFI image: %d clusters do not make a FAT16 of %d sectors per FAT", clusters, efiFATSize)
	}
	// Boot sector with the BIOS parameter block.
	bs := part[:efiSector]
	copy(bs, []byte{0xeb, 0x3c, 0x90})
	copy(bs[3:11], "DLSE2E  ")
	binary.LittleEndian.PutUint16(bs[11:], efiSector)
	bs[13] = 1 // sectors per cluster
	binary.LittleEndian.PutUint16(bs[14:], efiReserved)
	bs[16] = 2 // FATs
	binary.LittleEndian.PutUint16(bs[17:], efiRootEnts)
	binary.LittleEndian.PutUint16(bs[19:], efiPartSize)
	bs[21] = 0xf8
	binary.LittleEndian.PutUint16(bs[22:], efiFATSize)
	binary.LittleEndian.PutUint16(bs[24:], 63)
	binary.LittleEndian.PutUint16(bs[26:], 255)
	binary.LittleEndian.PutUint32(bs[28:], efiPartStart)
	bs[36], bs[38] = 0x80, 0x29
	binary.LittleEndian.PutUint32(bs[39:], 0x20261206)
	copy(bs[43:54], "DLS-E2E-EFI")
	copy(bs[54:62], "FAT16   ")
	bs[510], bs[511] = 0x55, 0xaa

	// Clusters: 2 \EFI, 3 \EFI\BOOT, 4... the file.
	const efiDir, bootDir, first = 2, 3, 4
	n := (len(file) + efiSector - 1) / efiSector
	if n == 0 || first+n > clusters+2 {
		return nil, fmt.Errorf("EFI image: a payload of %d bytes does not fit", len(file))
	}
	fat := make([]byte, efiFATSize*efiSector)
	put := func(c, v int) { binary.LittleEndian.PutUint16(fat[2*c:], uint16(v)) }
	put(0, 0xfff8)
	put(1, 0xffff)
	put(efiDir, 0xffff)
	put(bootDir, 0xffff)
	for i := 0; i < n; i++ {
		next := first + i + 1
		if i == n-1 {
			next = 0xffff
		}
		put(first+i, next)
	}
	for i := 0; i < 2; i++ {
		copy(part[(efiReserved+i*efiFATSize)*efiSector:], fat)
	}
	cluster := func(c int) []byte { return part[(data+c-2)*efiSector:] }
	entry := func(dst []byte, name string, attr byte, c, size int) {
		copy(dst[:11], name)
		dst[11] = attr
		binary.LittleEndian.PutUint16(dst[26:], uint16(c))
		binary.LittleEndian.PutUint32(dst[28:], uint32(size))
	}
	const dir, archive = 0x10, 0x20
	entry(part[rootDir*efiSector:], "EFI        ", dir, efiDir, 0)
	entry(cluster(efiDir), ".          ", dir, efiDir, 0)
	entry(cluster(efiDir)[32:], "..         ", dir, 0, 0)
	entry(cluster(efiDir)[64:], "BOOT       ", dir, bootDir, 0)
	entry(cluster(bootDir), ".          ", dir, bootDir, 0)
	entry(cluster(bootDir)[32:], "..         ", dir, efiDir, 0)
	entry(cluster(bootDir)[64:], "BOOTX64 EFI", archive, first, len(file))
	copy(cluster(first), file)
	return disk, nil
}
