package zfsstore

import (
	"fmt"
	"strconv"
	"strings"
)

// fuserPIDs parses what fuser(1) writes to standard output: the ids of the
// processes that have the file open, separated by blanks. FreeBSD's fuser
// writes the file name and each process's use letters to standard error;
// a letter stuck to an id (other fusers) is dropped.
func fuserPIDs(stdout string) ([]int, error) {
	var pids []int
	for _, f := range strings.Fields(stdout) {
		digits := strings.TrimRight(f, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
		pid, err := strconv.Atoi(digits)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("fuser: %q is not a process id", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
