// Command getter fetches a Terraform module source the way Terraform's module installer does
// (go-getter's Client in directory mode, its default getters and decompressors), so the tests
// can show what `terraform init` accepts: `getter SOURCE DESTINATION`. Exit 0 when fetched,
// 1 with go-getter's error on stderr otherwise.
//
// Built offline from Debian's golang-github-hashicorp-go-getter-dev (go-getter 1.4.1):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build -o getter .
package main

import (
	"fmt"
	"os"

	getter "github.com/hashicorp/go-getter"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: getter SOURCE DESTINATION")
		os.Exit(2)
	}
	pwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	client := getter.Client{
		Src:  os.Args[1],
		Dst:  os.Args[2],
		Pwd:  pwd,
		Mode: getter.ClientModeDir,
	}
	if err := client.Get(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
