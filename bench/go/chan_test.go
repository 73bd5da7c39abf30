// bench/go/chan_test.go: the cross-scheduler channel workloads of
// bench/bench_shared.c in Go, for bench/cross.sh: a round trip between two
// goroutines over two unbuffered channels, and a stream of items through a
// channel of capacity 1024. Run with GOMAXPROCS=2 (the goroutines then
// run on two threads, as coro's two schedulers do).
package chanbench

import "testing"

func BenchmarkGoChanPingPong(b *testing.B) {
	ping, pong := make(chan int64), make(chan int64)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
	}()
	for i := 0; i < b.N; i++ {
		ping <- int64(i)
		if <-pong != int64(i)+1 {
			b.Fatal("wrong value")
		}
	}
	close(ping)
}

func BenchmarkGoChanStream(b *testing.B) {
	ch := make(chan int64, 1024)
	done := make(chan bool)
	go func() {
		want := int64(0)
		for v := range ch {
			if v != want {
				panic("out of order")
			}
			want++
		}
		done <- want == int64(b.N)
	}()
	for i := 0; i < b.N; i++ {
		ch <- int64(i)
	}
	close(ch)
	if !<-done {
		b.Fatal("items lost")
	}
}
