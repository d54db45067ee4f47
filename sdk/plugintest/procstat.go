package plugintest

import (
	"fmt"
	"os"
	"strings"
)

// PeakRSSKiB is the peak resident set (VmHWM in /proc/<pid>/status) of the
// process pid, in KiB, or 0 when it cannot be read (not Linux, process
// gone). Abuse tests report it for the plugin under attack: a flood must
// leave memory bounded.
func PeakRSSKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb
		}
	}
	return 0
}
