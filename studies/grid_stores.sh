# Sourced by the background grid scripts (averaged_grids.sh, size_grids.sh): their live
# stores sit in $work; `snapshot NAME...` copies each into results/ (SQLite's backup API: a
# consistent copy while runs write) for a commit, `resume NAME...` starts a new session's
# live store from the committed one. Needs $work and $py.

snapshot() {
  for name in "$@"; do
    [ -f "$work/$name.sqlite" ] || continue
    "$py" -c "import sqlite3, sys; s = sqlite3.connect(sys.argv[1]); d = sqlite3.connect(sys.argv[2]); s.backup(d); d.close()" \
      "$work/$name.sqlite" "results/$name.sqlite"
    echo "results/$name.sqlite: $("$py" -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from runs').fetchone()[0])" "results/$name.sqlite") runs"
  done
}

resume() {
  for name in "$@"; do
    if [ ! -f "$work/$name.sqlite" ] && [ -f "results/$name.sqlite" ]; then
      cp "results/$name.sqlite" "$work/$name.sqlite"
    fi
  done
}
