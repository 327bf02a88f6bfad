#!/usr/bin/env bash
# Move the tested set of versions (constraints.txt) forward to today's newest releases.
#
#   scripts/update-lock.sh            # venv in .venv-lock (VENV=... to choose), CPU build of torch
#   TORCH_SPEC="torch==2.14.0" scripts/update-lock.sh
#
# 1. a new venv with the newest releases above pyproject.toml's floors (no constraints);
# 2. the tests that measure tables against the installed libraries: which model types keep packed documents
#    apart (tests/test_packing.py) and which attention implementations each model type offers
#    (tests/test_precision.py). If one fails, the table in runner/plan/modeltypes.py no longer matches what the new
#    release does: the script stops and names the test; change the table, then run the script again;
# 3. PACKING_PROVEN_ON (runner/plan/modeltypes.py) set to the new transformers release, and the golden plans
#    regenerated with the explicit command (python tests/golden_plans.py);
# 4. constraints.txt rewritten from `pip freeze` (the project itself left out);
# 5. the whole suite, on the new versions, as the README runs it.
# Then review `git diff` (tables, golden plans, lock) and commit them together.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-lock}
TORCH_SPEC=${TORCH_SPEC:-torch}

rm -rf "$VENV"
python3 -m venv "$VENV"
. "$VENV/bin/activate"
pip install -q --upgrade pip
pip install -q "$TORCH_SPEC"                 # on a CPU-only machine use the CPU build's index (README)
pip install -q --upgrade -e ".[train,test]"  # newest releases: no -c constraints.txt here

transformers_version=$(python -c 'import transformers; print(transformers.__version__)')
echo "newest: $(pip freeze | grep -iE '^(torch|transformers|trl|peft|accelerate|datasets|bitsandbytes|deepspeed)==' | tr '\n' ' ')"

tables=(
  "tests/test_packing.py::test_packed_rows_keep_documents_apart_exactly_where_the_plan_says"
  "tests/test_precision.py::test_the_attention_table_matches_transformers"
)
if ! python -m pytest -q -p no:cacheprovider "${tables[@]}"; then
  echo "update-lock: a table in runner/plan/modeltypes.py does not match transformers $transformers_version (the" >&2
  echo "failures above name the model type); change it to what the release does and run this script again." >&2
  echo "constraints.txt is unchanged." >&2
  exit 1
fi

sed -i -E "s/^PACKING_PROVEN_ON = \"[^\"]*\"/PACKING_PROVEN_ON = \"$transformers_version\"/" runner/plan/modeltypes.py
python tests/golden_plans.py >/dev/null

{
  sed -n '/^#/p' constraints.txt
  # the project itself is left out; a local build label (torch's +cpu) is not part of the pin
  pip freeze --exclude-editable | grep -v -E '^(-e |recipe==)' | sed -E 's/^([^=]+==[^+]+)\+.*$/\1/'
} > constraints.txt.new
mv constraints.txt.new constraints.txt

ruff check . && ruff format --check .
python -m pytest -q
echo "update-lock: the suite passed on the new versions; review and commit: git diff --stat"
