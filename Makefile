# frpo_nb — every target installs what it needs into .venv first (CPU torch, pinned).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
TORCH := torch==2.13.0
# elsewhere than this project's machines, take the CPU build: make install TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
TORCH_INDEX ?=
JUNIT := .pytest-junit.xml

.PHONY: install lock test-gpu-stack gpu-kit docs-install demo study study-full map study2 test test-slow sync-check readme bench gpu-check figures records notebooks docs clean

# the CPU lock (requirements/cpu.txt, `make lock`), then the package without resolving again; torch is not in the lock
# (PyPI's linux torch is the CUDA build): the CPU wheel as before. eval: lm-eval and EvalPlus (the slow tests' real runs)
$(VENV)/.installed: settings.ini setup.py requirements/cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH) $(TORCH_INDEX)
	$(PY) -m pip install -q -r requirements/cpu.txt
	$(PY) -m pip install -q --no-deps -e ".[dev,slurm,eval]"
	touch $@

install: $(VENV)/.installed

## make lock: the locks in requirements/, resolved by uv from the package's metadata (settings.ini) for linux x86_64,
## Python 3.11: gpu.txt (CUDA 13 torch 2.13, vLLM 0.31, the pins of requirements/gpu.in), cpu.txt (what make install
## and CI install: the newest versions in the ranges, CPU torch apart) and gpu-stack-cpu.txt (the GPU lock's versions
## with CPU torch: what make test-gpu-stack runs the fast suite on). Needs uv (in the dev extra, or pip install uv).
UV ?= $(shell command -v uv 2>/dev/null || echo $(BIN)/uv)
LOCK := $(UV) pip compile -q pyproject.toml --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--custom-compile-command "make lock" --extra eval --extra slurm --extra dev
lock:
	$(LOCK) --extra gpu requirements/gpu.in -o requirements/gpu.txt
	$(LOCK) --overrides requirements/no-torch.txt -o requirements/cpu.txt
	$(LOCK) --overrides requirements/no-torch.txt -c requirements/gpu.txt -o requirements/gpu-stack-cpu.txt

## make test-gpu-stack: the fast suite again in a second venv, on CPU torch with the GPU lock's versions of everything
## else (transformers 5.17, ...: requirements/gpu-stack-cpu.txt); ends with 'N passed, N failed'. GPU_STACK_TESTS: the
## pytest paths (default: all of tests/)
GPU_STACK := .venv-gpu-stack
$(GPU_STACK)/.installed: settings.ini setup.py requirements/gpu-stack-cpu.txt
	test -x $(GPU_STACK)/bin/python || python3 -m venv $(GPU_STACK)
	$(GPU_STACK)/bin/python -m pip install -q $(TORCH) $(TORCH_INDEX)
	$(GPU_STACK)/bin/python -m pip install -q -r requirements/gpu-stack-cpu.txt
	$(GPU_STACK)/bin/python -m pip install -q --no-deps -e .
	touch $@

GPU_STACK_TESTS ?= tests
test-gpu-stack: $(GPU_STACK)/.installed
	PATH="$(CURDIR)/$(GPU_STACK)/bin:$$PATH" $(GPU_STACK)/bin/python -m pytest $(GPU_STACK_TESTS) -m "not slow" $(XDIST) -p no:cacheprovider \
	  --junitxml=.pytest-junit-gpu-stack.xml -q; rc=$$?; $(GPU_STACK)/bin/python tests/summary.py .pytest-junit-gpu-stack.xml; exit $$rc

# the docs extra (settings.ini docs_requirements: mkdocs, mkdocs-material, mkdocs-jupyter, mkdocstrings, playwright)
$(VENV)/.docs-installed: $(VENV)/.installed settings.ini setup.py
	$(PY) -m pip install -q -e ".[docs]"
	touch $@

docs-install: $(VENV)/.docs-installed

## make demo: install, then run the main job on the embedded default: GRPO vs FRPO on the tiny model, then its
## figures into results/tiny-demo/figures/ (the committed figures/ are the study's and stay as they are)
demo: install
	$(BIN)/frpo-nb run configs/tiny-demo.yaml --workers 2
	@echo; echo "demo finished. Runs (executed notebooks, result.json, curves): results/tiny-demo/"; \
	ls -1d results/tiny-demo/safety-*; echo "Figures and tables written to results/tiny-demo/figures/:"; \
	ls -1 results/tiny-demo/figures/

## make study: the pre-registered confirmatory study (configs/tiny-safety-confirm.yaml: its analysis: block and the
## plan in studies/PREREGISTRATION.md were committed before it ran): the shared base policy once (while no run competes
## for the cores), the sweep, the base measured at every seed as the train runs measure their policies
## (studies/base_vs_rl.py), then every figure and table of the study from results/ (all but fig9_map, the map's: make map
## draws it, make figures from the run records)
study: install
	@mkdir -p results/tiny-safety-confirm/_bases
	$(PY) -c "from frpo_nb.tiny import tiny_base; print('base policy:', tiny_base('results/tiny-safety-confirm/_bases', progress=True))"
	$(BIN)/frpo-nb sweep configs/tiny-safety-confirm.yaml --workers 2; rc=$$?; \
	$(PY) studies/base_vs_rl.py results/tiny-safety-confirm || rc=1; \
	$(BIN)/frpo-nb figures --results results --sweeps tiny-safety-confirm --only $(CONFIRM_NOTEBOOKS) --figures figures \
	  --in-place || rc=1; $(BIN)/nbdev_clean --fname nbs/figures || rc=1; exit $$rc

## make study-full: the confirmatory study and the larger exploratory grids beside it: tiny-safety (GRPO, the control,
## FRPO at five λ, SAM-GRPO; SFT and a downstream RL task; seeds 0-4) and tiny-math (seeds 0-4); then every figure on
## all the studies in results/ into results/figures/ (the committed figures/ stay those of make figures)
study-full: study
	@mkdir -p results/tiny-safety/_bases results/tiny-math/_bases
	cp -Rn results/tiny-safety-confirm/_bases/base-* results/tiny-safety/_bases/
	cp -Rn results/tiny-safety-confirm/_bases/base-* results/tiny-math/_bases/
	$(BIN)/frpo-nb sweep configs/tiny-math.yaml --workers 1 --no-progress > results/tiny-math.log 2>&1 & math=$$!; \
	$(BIN)/frpo-nb sweep configs/tiny-safety.yaml --workers 1; rc=$$?; wait $$math || rc=1; \
	echo "tiny-math: $$(tail -n 1 results/tiny-math.log)"; \
	$(PY) studies/base_vs_rl.py results/tiny-math results/tiny-safety || rc=1; \
	$(BIN)/frpo-nb figures --results results --figures results/figures || rc=1; exit $$rc

## fail if the library is not what the notebooks export, or a notebook is not clean, or README is stale
sync-check: install
	@before=$$(git status --porcelain --untracked-files=all -- frpo_nb nbs README.md | md5sum; git diff -- frpo_nb nbs README.md | md5sum); \
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(MAKE) -s readme && \
	after=$$(git status --porcelain --untracked-files=all -- frpo_nb nbs README.md | md5sum; git diff -- frpo_nb nbs README.md | md5sum); \
	if [ "$$before" != "$$after" ]; then \
	  echo "FAIL: nbdev_export/nbdev_clean/readme changed files: notebooks and library out of sync or not clean"; \
	  git status --short -- frpo_nb nbs README.md; exit 1; fi; echo "sync-check: library, notebooks and README in sync"

readme: install
	$(BIN)/jupyter nbconvert --log-level=ERROR --to markdown --stdout nbs/index.ipynb > README.md

## the fast suites run on TEST_WORKERS processes (pytest-xdist): a test file stays on one worker, so its module fixtures
## are built once, except the notebook checks, spread one by one; the longest first (tests/conftest.py); TEST_WORKERS=0:
## one process
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
SLOW_WORKERS ?= $(if $(filter 0,$(TEST_WORKERS)),0,$(shell echo $$(($(TEST_WORKERS) + 1))))
SLOW_XDIST := $(if $(filter 0,$(SLOW_WORKERS)),,-n $(SLOW_WORKERS) --dist loadfile)
## make test: sync check, every notebook (except #| slow / #| gpu cells) and pytest; ends with 'N passed, N failed'
test: sync-check
	$(PY) -m pytest tests -m "not slow" $(XDIST) -p no:cacheprovider --junitxml=$(JUNIT) -q; rc=$$?; \
	$(PY) tests/summary.py $(JUNIT); exit $$rc

## slow notebook cells and slow pytest tests, and the site in Chromium (tests/test_docs.py: builds _docs/ if missing)
## on SLOW_WORKERS processes (default: one more than TEST_WORKERS): the Slurm tests, the longest unit, mostly wait (for
## the scheduler, for time limits), so one worker waits with them while the others keep the cores busy
## OpenMP threads sleep while they wait (OMP_WAIT_POLICY=PASSIVE) instead of spinning: the slow notebook check of
## 07_evaluate builds the base on two threads (fixed, for the same weights) beside the other workers, which made it 4x
## slower spinning (bench/README.md); results do not change (the wait policy is not the work's partition)
test-slow: export OMP_WAIT_POLICY ?= PASSIVE
test-slow: install docs-install
	$(PY) -m pytest tests -m slow $(SLOW_XDIST) -p no:cacheprovider --junitxml=$(JUNIT) -q; rc=$$?; \
	$(PY) tests/summary.py $(JUNIT); [ $$rc -eq 5 ] && exit 0; exit $$rc

## rebuild the committed figures/ from the studies' results (never trains; refuses when they are missing):
## make figures  (RESULTS=results, what make study leaves). A sweep's own figures: frpo-nb figures --results DIR
## Two steps, each run even when the other fails (exit status 1 if either did): (a) every figure notebook on the
## confirmatory study alone (--sweeps tiny-safety-confirm) into figures/, outputs written back into nbs/figures/
## (--in-place), so they show the committed figures; fig9_map draws its own sweep (its map_sweep parameter);
## (b) the second confirmatory study's refusal curve, paired differences and matched KL (its configs/
## tiny-safety-confirm2.yaml analysis: block) into figures/confirm2/, the notebooks left as (a) wrote them.
## Without finished runs of a step's study in $(RESULTS) (a fresh clone), the committed run records in
## studies/records/ are used instead. tests/test_fresh_clone.py runs this recipe in a clone (make -o install figures).
RESULTS ?= results
RECORDS := studies/records
CONFIRM2_NOTEBOOKS := fig1_refusal_vs_sft,fig7_paired_differences,fig8_matched_kl
comma := ,
space := $(subst ,, )
CONFIRM_NOTEBOOKS := $(subst $(space),$(comma),$(filter-out fig9_map,$(basename $(notdir $(wildcard nbs/figures/*.ipynb)))))
# the two steps as shell commands on the results folder $(1) (make figures, map and study2 run them): rc=1 on failure
FIGURES_CONFIRM = $(BIN)/frpo-nb figures --results $(1) --records $(RECORDS) --sweeps tiny-safety-confirm --figures figures \
	--in-place || rc=1; $(BIN)/nbdev_clean --fname nbs/figures || rc=1
FIGURES_CONFIRM2 = $(BIN)/frpo-nb figures --results $(1) --records $(RECORDS) --sweeps tiny-safety-confirm2 \
	--only $(CONFIRM2_NOTEBOOKS) --figures figures/confirm2 || rc=1
figures: install
	rc=0; $(call FIGURES_CONFIRM,$(RESULTS)); \
	$(call FIGURES_CONFIRM2,$(RESULTS)); exit $$rc

## make map: the exploration for the map (configs/tiny-safety-map.yaml: λ × binary/graded reward × downstream data,
## the control grpo-factor, SAM-GRPO; seeds 2000-2002) on the confirmatory study's shared base policy (make study
## made it), then the figures as make figures draws them, from results/ (fig9_map: the map)
map: install
	@mkdir -p results/tiny-safety-map/_bases
	cp -Rn results/tiny-safety-confirm/_bases/base-* results/tiny-safety-map/_bases/
	$(BIN)/frpo-nb sweep configs/tiny-safety-map.yaml --workers 2; rc=$$?; \
	$(call FIGURES_CONFIRM,results); \
	$(call FIGURES_CONFIRM2,results); exit $$rc

## make study2: the second confirmatory study (configs/tiny-safety-confirm2.yaml and its analysis: block, committed
## before it runs) on the same shared base policy, then its figures from results/ into figures/confirm2/ (step (b) of
## make figures)
study2: install
	@mkdir -p results/tiny-safety-confirm2/_bases
	cp -Rn results/tiny-safety-confirm/_bases/base-* results/tiny-safety-confirm2/_bases/
	$(BIN)/frpo-nb sweep configs/tiny-safety-confirm2.yaml --workers 2; rc=$$?; \
	$(call FIGURES_CONFIRM2,results); exit $$rc

## make records: the run records (result.json, curves, train logs; no weights) of the studies in $(RESULTS) into
## studies/records/<study>.jsonl.gz, from which make figures rebuilds figures/ on a fresh clone (commit them together)
records: install
	$(BIN)/frpo-nb records export $(RESULTS) studies/records

## make notebooks: execute every library notebook in place (nbs/[0-9]*, paper_scale; cells flagged slow / gpu /
## notest / eval: false skipped, as in make test) and keep the outputs, cleaned by nbdev_clean; deterministic, so
## on an unchanged tree it changes nothing (tools/notebooks.py says how). Not nbs/experiments/ (papermill templates,
## output-free) nor nbs/figures/ (make figures executes those on the study's results).
notebooks: install
	nice -n 10 $(PY) tools/notebooks.py execute
	$(BIN)/nbdev_clean

## make docs: the documentation site into _docs/ (README, every notebook with its outputs, the API reference from
## the docstrings, the paper-scale guide, the results); offline MathJax (npm mathjax@3, fetched once into .cache/)
docs: docs-install
	NO_MKDOCS_2_WARNING=1 $(PY) tools/build_docs.py

bench: install
	$(PY) bench/bench_loss.py
	$(PY) bench/bench_papermill.py
	$(PY) bench/bench_trainer.py

## make gpu-check: on one GPU, FRPO vs GRPO with a ~0.5 B Qwen2 built from a config (bf16, no download): step-time
## ratio, peak memory, generation tokens/s, the loss at G=256 k=8 T=4096; where TRL and this package are importable
## also the real trainers (FRPOTrainer vs GRPOTrainer, a LoRA SAM-GRPO step, the tiny pipeline on the GPU); one summary
## line, under 8 minutes. The model checks need only CUDA torch: GPU_PYTHON=/path/to/python make gpu-check; a bare
## node: make gpu-kit. CPU smoke test: bench/gpu_check.py --cpu --tiny
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) bench/gpu_check.py $(GPU_CHECK_ARGS)

## make gpu-kit: into gpu-kit/ (git-ignored, <= 64 MiB) the wheels a bare offline GPU node lacks for gpu_check.py's
## trainers' stage (node: Python 3.12, CUDA torch 2.11, transformers 5.17, accelerate, peft; no trl, datasets,
## papermill), this package's wheel and gpu_check.py; there: pip install --no-index --no-deps gpu-kit/*.whl &&
## python gpu-kit/gpu_check.py. KIT_ARGS: tools/gpu_kit.py options (--python, --has)
KIT := gpu-kit
gpu-kit: install
	$(PY) tools/gpu_kit.py --out $(KIT) $(KIT_ARGS)

clean:
	rm -rf $(VENV) $(GPU_STACK) $(KIT) results _proc _docs .cache *.egg-info $(JUNIT)
