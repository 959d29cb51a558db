module github.com/petrel-rpc/petrel

go 1.26
