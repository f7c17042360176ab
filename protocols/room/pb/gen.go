// Package pb holds the generated wire types of package room.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative room.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative sync.proto
