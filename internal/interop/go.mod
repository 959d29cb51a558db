module github.com/petrel-rpc/petrel/internal/interop

go 1.26.0

require (
	github.com/firepear/petrel v0.40.0
	github.com/petrel-rpc/petrel v0.0.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/klauspost/cpuid/v2 v2.4.2 // indirect
	github.com/panjf2000/ants/v2 v2.12.1 // indirect
	github.com/panjf2000/gnet/v2 v2.9.7 // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	go.uber.org/zap v1.27.0 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	gopkg.in/natefinch/lumberjack.v2 v2.2.1 // indirect
)

replace github.com/firepear/petrel => ../../../shared/peers/firepear-petrel-v0.40.0

replace github.com/petrel-rpc/petrel => ../..
