package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lsnode/lsnode/internal/cli"
	"github.com/lsnode/lsnode/registrar"
)

// cmdUser edits a registrar's users file (HA1 hashes; registrar.users_file).
var cmdUser = cli.Group("user", cli.Sub{Name: "add", Run: cmdUserAdd}, cli.Sub{Name: "remove", Run: cmdUserRemove},
	cli.Sub{Name: "list", Run: cmdUserList})

// userFlags parses the flags every user subcommand has and opens the file.
func userFlags(name string, args []string, stderr io.Writer, more func(*cli.FlagSet)) (*registrar.UsersFile, string, []string, error) {
	fs := cli.NewFlags("user "+name, stderr)
	file := fs.String("file", "", "the users file (created by add)")
	realm := fs.String("realm", "", "its realm: the domain (needed to create it)")
	if more != nil {
		more(fs)
	}
	if err := fs.ParseAnywhere(args); err != nil || *file == "" {
		return nil, "", nil, cli.UsageErr(err, "user %s: want --file FILE (see 'lsnode help user')", name)
	}
	f, err := registrar.OpenUsers(*file, *realm)
	if err != nil {
		return nil, "", nil, cli.Fail(1, "%v", err)
	}
	return f, *file, fs.Args(), nil
}

func cmdUserAdd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	var aor *string
	var fromStdin, replace *bool
	f, file, rest, err := userFlags("add", args, stderr, func(fs *cli.FlagSet) {
		aor = fs.String("aor", "", "the AOR the user registers (default sip:USER@REALM)")
		fromStdin = fs.Bool("password-stdin", false, "read the password from the first line of stdin (default: generate one and print it)")
		replace = fs.Bool("replace", false, "replace an existing user's AOR and password")
	})
	if err != nil || len(rest) != 1 {
		return cli.UsageErr(err, "user add: want --file FILE [--realm D] USER")
	}
	password, generated := registrar.NewPassword(), true
	if *fromStdin {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if password, generated = strings.TrimRight(line, "\r\n"), false; password == "" {
			return cli.Fail(1, "user add: no password on stdin (%v)", err)
		}
	}
	u, err := f.Add(rest[0], *aor, password, *replace)
	if err == nil {
		err = f.SaveAtomic(file)
	}
	if err != nil {
		return cli.Fail(1, "%v", err)
	}
	fmt.Fprintf(stdout, "%s: user %s (%s) in realm %s\n", file, u.Username, u.AOR, f.Realm)
	if generated {
		fmt.Fprintf(stdout, "password: %s\n", password)
	}
	return nil
}

func cmdUserRemove(_ context.Context, args []string, stdout, stderr io.Writer) error {
	f, file, rest, err := userFlags("remove", args, stderr, nil)
	if err != nil || len(rest) != 1 {
		return cli.UsageErr(err, "user remove: want --file FILE USER")
	}
	if err := f.Remove(rest[0]); err != nil {
		return cli.Fail(1, "%v", err)
	}
	if err := f.SaveAtomic(file); err != nil {
		return cli.Fail(1, "%v", err)
	}
	return nil
}

func cmdUserList(_ context.Context, args []string, stdout, stderr io.Writer) error {
	f, _, rest, err := userFlags("list", args, stderr, nil)
	if err != nil || len(rest) != 0 {
		return cli.UsageErr(err, "user list: want --file FILE")
	}
	for _, u := range f.Users {
		fmt.Fprintf(stdout, "%s\t%s\n", u.Username, u.AOR)
	}
	return nil
}
