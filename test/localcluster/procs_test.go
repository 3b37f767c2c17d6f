package localcluster

import (
	"os"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	double := func(v float64) float64 { return 2 * v }
	for _, tt := range []struct {
		runs []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 14},
		{[]float64{5, 1, 3}, 6},
		{[]float64{4, 1, 3, 2}, 6}, // the upper middle of an even count
	} {
		if got := Median(tt.runs, double); got != tt.want {
			t.Errorf("Median(%v, 2x) = %v, want %v", tt.runs, got, tt.want)
		}
	}
}

func TestCPUTimeGrowsWithWork(t *testing.T) {
	before := CPUTime(os.Getpid())
	// Busy for up to 2 s of wall time, until 30 ms of CPU (three of the kernel's ticks) are counted.
	for deadline := time.Now().Add(2 * time.Second); CPUTime(os.Getpid())-before < 30*time.Millisecond; {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time of this busy process grew from %s to %s in 2 s", before, CPUTime(os.Getpid()))
		}
	}
	if CPUTime(-1) != 0 {
		t.Error("CPU time of a process that does not exist should read 0")
	}
}
