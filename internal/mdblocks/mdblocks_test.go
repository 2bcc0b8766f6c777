package mdblocks

import (
	"reflect"
	"testing"
)

func TestFind(t *testing.T) {
	md := "# t\n\n```sh\necho a\n```\n\ntext\n\n- item:\n\n  ```sh\n  echo b\n    x\n  ```\n\n```yaml\nk: v\n```\n"
	want := []Block{{"sh", "echo a\n", 3}, {"sh", "echo b\n  x\n", 11}}
	if got := Find([]byte(md), "sh"); !reflect.DeepEqual(got, want) {
		t.Fatalf("sh blocks: %+v, want %+v", got, want)
	}
	if got := Find([]byte(md), ""); len(got) != 3 || got[2].Lang != "yaml" || got[2].Text != "k: v\n" || got[2].Line != 16 {
		t.Fatalf("all blocks: %+v", got)
	}
}
