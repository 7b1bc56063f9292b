# dcgan-pipeline: set-up, demo, tests and benchmarks on a fresh Debian 12 machine.
#   make demo    set everything up, then run the pipeline on its embedded default data
#   make test    set everything up, then run the test suite
#   make fuzz    the fuzz targets (tests/fuzz.rs), FUZZ_SECONDS each (default 1800), niced
#   make lint    formatting and clippy, as CI runs them
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := $(CURDIR)/.venv
PYTHON    ?= python3
TORCH     := torch==2.11.0
APT_PACKAGES := libopencv-dev libjpeg-dev opencv-data opencv-doc clang libclang-dev pkg-config python3-venv
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BIN       := target/release
# Data set paths: configs/paper.toml's [paths], overridable on the make line
# (make preprocess IMAGENET_DIR=/data/imagenet/train LSUN_DIR=... FACES_DIR=... OUT=...).
paper_path = $(shell tools/config-path configs/paper.toml $(1))
OUT          ?= $(or $(call paper_path,out),out)
FACES_DIR    ?= $(call paper_path,faces)
LSUN_DIR     ?= $(call paper_path,lsun)
IMAGENET_DIR ?= $(call paper_path,imagenet)
CIFAR_DIR    ?= $(call paper_path,cifar)
# cifar-eval scores the D that make train wrote, else the committed one (trained on an H100).
D ?= $(if $(wildcard $(OUT)/train/discriminator.safetensors),$(OUT)/train/discriminator.safetensors,models/imagenet32-d.safetensors)

# torch-sys finds libtorch through the venv's python; the binaries carry an rpath to it.
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
export DCGAN_PYTHON := $(VENV)/bin/python

.PHONY: help setup apt apt-test venv build demo test fuzz lint slurm-preprocess slurm-train slurm-all slurm-status bench bench-faces bench-train bench-svm bench-dedupe bench-dedupe-windows bench-dedupe-growth bench-dedupe-synthetic bench-copy eval-dedupe eval-dedupe-scale preprocess train select-d cifar-data cifar-eval

help:
	@echo "make demo        set up (apt, venv with torch, release build) and run the demo into $(OUT)/demo"
	@echo "make test        set up and run the test suite"
	@echo "make lint        cargo fmt --check and cargo clippy (warnings are errors)"
	@echo "make bench       crop stage vs Pillow on BENCH_DIR (default ../shared/data/imagenet-samples)"
	@echo "make bench-faces faces stage vs cv2 (YuNet vs FaceDetectorYN on YUNET_BENCH_DIR, Haar vs CascadeClassifier), Haar accuracy on PASCAL VOC faces"
	@echo "make preprocess  IMAGENET_DIR=/path/to/train (a folder or a .tar.gz)  crop ImageNet into $(OUT)/imagenet32"
	@echo "make slurm-preprocess / slurm-train / slurm-all  the same as Slurm jobs (slurm/site.conf; docs/cluster.md); nothing is built"
	@echo "make slurm-status  where the Slurm run in $(OUT) stands, and what to do next"
	@echo "make train       train imagenet32 (configs/paper.toml) on $(OUT)/imagenet32 into $(OUT)/train"
	@echo "make select-d    score every D snapshot of $(OUT)/train on CIFAR_DIR's validation split into $(OUT)/select"
	@echo "make bench-train one imagenet32 training step at batch 128 on the CPU: train vs PyTorch"
	@echo "make cifar-data  download and check the official CIFAR-10 binary batches into CIFAR_DIR ($(CIFAR_DIR))"
	@echo "make cifar-eval  the paper's Table 1: D=$(D) features + L2-SVM on CIFAR_DIR into $(OUT)/cifar-eval"
	@echo "make bench-svm   FEATURES=<cifar-eval output with save_features>: our L2-SVM vs sklearn LinearSVC"
	@echo "make bench-dedupe 1,000,000 codes indexed and searched (time, memory); index vs brute force on 100,000"
	@echo "make eval-dedupe  dedupe's labelled near-duplicate evaluation on EVAL_DIR (default ../shared/data/imagenet-samples)"
	@echo "make eval-dedupe-scale  dedupe's removals scored on DEDUPE_SCALE_INPUT (default Tiny ImageNet's 100,000) with planted copies"
	@echo "make bench-copy  the data-copying test at scale: 10,000 samples against COPY_BENCH_INPUT (default Tiny ImageNet's 100,000 crops), vs NumPy"
	@echo "make bench-dedupe-growth  dedupe's CPU time and memory per photo at 25k-155k real photos (issue 38)"
	@echo "make bench-dedupe-synthetic  dedupe's steps after decoding on SYNTH_N synthetic images (default 1M)"
	@echo "make bench-dedupe-windows  the searches (exact vs sampled) and the check's cost on 25%/50%/100% of DEDUPE_SCALE_INPUT"

setup: apt venv build

# System packages, only the missing ones (apt needs root: sudo is used when not root).
apt:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "installing $(APT_PACKAGES)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi

# The Slurm test (tests/slurm_cluster.rs) brings up a one-node cluster: installed by the test set-up
# only; where it cannot be installed, that test says so and skips.
TEST_APT_PACKAGES := slurm-wlm munge
apt-test:
	@if ! dpkg -s $(TEST_APT_PACKAGES) >/dev/null 2>&1; then \
		echo "installing $(TEST_APT_PACKAGES) (the Slurm test)"; \
		( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(TEST_APT_PACKAGES) ) \
			|| echo "apt-test: could not install $(TEST_APT_PACKAGES): the Slurm test will skip"; \
	fi

# A project-local venv: libtorch for tch (from the torch wheel), numpy for the tests.
venv: $(VENV)/.ready
$(VENV)/.ready:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(TORCH) numpy
	touch $@

build: venv
	cargo build --release

DEMO_PHOTOS := /usr/share/doc/opencv-doc/examples/data
DEMO := $(OUT)/demo
# OpenCV's 5,000 handwritten digits (opencv-doc; read directly: 4,000 train / 1,000 test, grey to RGB,
# upscaled to 32x32). The GAN's settings were chosen by measurement over seeds (docs/train.md#the-digits-demo):
# the 4x4-kernel dcgan32 at width 32, batch 64, the paper's Adam (2e-4, beta1 0.5), DEMO_STEPS steps.
DIGITS := $(DEMO_PHOTOS)/digits.png
DEMO_STEPS ?= 1500
DEMO_TRAIN := --set train.preset=dcgan32 --set train.width=32 --set train.batch=64 --set train.epochs=1000 \
	--set train.max_steps=$(DEMO_STEPS) --set train.device=cpu --set train.keep_checkpoints=1
# The faces demo's input: the opencv-doc photos (one real face, left06.jpg, and a squirrel) and a portrait
# with a clear face: scikit-image's astronaut (Eileen Collins, NASA, public domain), taken out of Debian's
# python3-skimage package without installing it (its dependencies are large). Photo by photo as before.
DEMO_FACES_INPUT := $(DEMO)/faces-input
ASTRONAUT_MEMBER := ./usr/lib/python3/dist-packages/skimage/data/astronaut.png
$(DEMO_FACES_INPUT)/skimage/astronaut.png:
	mkdir -p $(DEMO_FACES_INPUT)/skimage $(OUT)/deb
	cd $(OUT)/deb && apt-get download python3-skimage
	dpkg-deb --fsys-tarfile $$(ls $(OUT)/deb/python3-skimage_*.deb | head -1) | tar -xO $(ASTRONAUT_MEMBER) > $@.tmp
	mv $@.tmp $@ && rm -rf $(OUT)/deb
	ln -sfn $(DEMO_PHOTOS) $(DEMO_FACES_INPUT)/opencv-doc

demo: setup $(DEMO_FACES_INPUT)/skimage/astronaut.png
	$(BIN)/crop --input $(DEMO_PHOTOS) --output $(DEMO)/crop
	$(BIN)/faces --input $(DEMO_FACES_INPUT) --output $(DEMO)/faces --set faces.save_png=true
	$(BIN)/dedupe --input $(DEMO_PHOTOS) --output $(DEMO)/dedupe --set dedupe.ae_steps=500
	$(BIN)/train --input $(DIGITS) --output $(DEMO)/train $(DEMO_TRAIN)
	@# Does G copy its training set? The data-copying test against the sheet's held-out test digits.
	$(BIN)/sample --generator $(DEMO)/train --output $(DEMO)/samples --copy-test --training $(DIGITS) --cells 10
	@# The checks (G's samples by class, D's features with few labels) fail the demo, after the report is written.
	$(BIN)/digits eval --input $(DIGITS) --output $(DEMO)/digits --generator $(DEMO)/train \
		--discriminator "demo D=$(DEMO)/train/discriminator.safetensors" \
		--discriminator "committed D=models/imagenet32-d.safetensors"; status=$$?; \
		$(BIN)/report --run $(DEMO) --title "dcgan-pipeline demo" && \
		echo "demo: samples and a latent walk of the demo's G: $(DEMO)/samples/samples.png, $(DEMO)/samples/walk.png" && \
		echo "demo: open $(DEMO)/report.html" && exit $$status

# The tests build their own binaries in the test-release profile (Cargo.toml): no release build needed.
test: apt apt-test venv
	cargo test --profile test-release --no-fail-fast

# Fuzzing (tests/fuzz.rs, docs/reliability.md): each target for FUZZ_SECONDS, niced, not part of
# `make test`. A failure prints the shrunk case; commit it as a test at the end of tests/fuzz.rs.
FUZZ_SECONDS ?= 1800
FUZZ_TARGETS ?= fuzz_tar_reader fuzz_lmdb_reader fuzz_folder_names fuzz_decoders fuzz_face_boxes
fuzz: apt apt-test venv
	cargo test --profile test-release --test fuzz --no-run
	for t in $(FUZZ_TARGETS); do \
		FUZZ_SECONDS=$(FUZZ_SECONDS) nice -n 19 cargo test --profile test-release --test fuzz -- --ignored --exact $$t --nocapture || exit 1; \
	done

# Formatting (rustfmt.toml) and clippy with the project's lints (Cargo.toml's [lints], clippy.toml:
# no function over 100 lines), warnings as errors. The test profile, so that the dependencies'
# build scripts (libtorch's, OpenCV's bindings) are shared with `make test`.
lint: apt venv
	cargo fmt --check
	cargo clippy --profile test-release --all-targets -- -D warnings

# Side by side with Pillow on the same folder: images/s and the ratio, PSNR of the crops.
BENCH_DIR ?= ../shared/data/imagenet-samples
bench: setup
	$(VENV)/bin/pip install -q pillow numpy
	$(VENV)/bin/python benches/crop_vs_pillow.py --input $(BENCH_DIR) --crop $(BIN)/crop

# cv2 4.6 (Debian's OpenCV release; cv2 5 has no CascadeClassifier) needs numpy < 2: its own venv.
# FACES_DIR is already set (empty) from configs/paper.toml above, so ?= would never apply here.
# YuNet's peer is cv2 4.10's FaceDetectorYN (4.6's cannot load the 2023 model): a venv of its own.
BENCH_FACES_DIR = $(or $(FACES_DIR),../shared/data/faces)
YUNET_BENCH_DIR ?= ../shared/data/faces-wider-dev/images
SCRFD_MODEL ?= ../shared/data/models/scrfd_2.5g_bnkps_pypi_scrfd_0.3.0.onnx
bench-faces: setup
	[ -x .bench-venv-yunet/bin/python ] || $(PYTHON) -m venv .bench-venv-yunet
	.bench-venv-yunet/bin/pip install -q "opencv-python-headless==4.10.*"
	nice .bench-venv-yunet/bin/python benches/faces_yunet_vs_cv2.py --input $(YUNET_BENCH_DIR) --faces $(BIN)/faces
	@# SCRFD only where the user has the model file (never shipped or downloaded here: docs/faces.md).
	nice .bench-venv-yunet/bin/python benches/faces_scrfd_vs_cv2.py --input $(YUNET_BENCH_DIR) --model $(SCRFD_MODEL) \
		--faces $(BIN)/faces --threshold 0.35
	[ -x .bench-venv/bin/python ] || $(PYTHON) -m venv .bench-venv
	.bench-venv/bin/pip install -q "numpy<2" opencv-python-headless==4.6.0.66
	.bench-venv/bin/python benches/faces_vs_cv2.py --input $(BENCH_FACES_DIR) --faces $(BIN)/faces
	$(PYTHON) benches/faces_accuracy.py --voc $(BENCH_FACES_DIR)/dlib-voc --faces $(BIN)/faces

# Radius 16 by default: the published figures (BENCH_RADIUS=... for another; the stage default is 1).
bench-dedupe: setup
	cargo run --release --example dedupe_index_bench -- 1000000 100000 $(or $(BENCH_RADIUS),16)

EVAL_DIR ?= ../shared/data/imagenet-samples
eval-dedupe: setup
	$(BIN)/dedupe --eval --input $(EVAL_DIR) --output $(OUT)/dedupe-eval

# Dedupe at scale: every photo of a large real set plus edited copies of 2,000 of them (one edit kind
# per copy: crops, borders, rescale, re-encoding, mixed), the removals scored per radius and cluster
# rule beside pHash, with the pHash check at 6-14 bits and the crop route, recall per edit kind (CPU;
# 5-15 min on Tiny ImageNet's 100,000 on the loaded 2-core VM, mostly the autoencoder). SEED=1 for
# the second run (other edits, another model).
DEDUPE_SCALE_INPUT ?= ../shared/data/tiny-imagenet-32-train.tar.gz
eval-dedupe-scale: setup
	$(BIN)/dedupe --eval-scale --input $(DEDUPE_SCALE_INPUT) --output $(OUT)/dedupe-eval-scale$(SEED) --set dedupe.device=cpu --set dedupe.seed=$(or $(SEED),0)

# The crop route's window search with 3 and 4 chunks on a quarter, a half and all of a dedupe run's
# crops (the stage run first, resumable), for projecting its cost to larger sets.
bench-dedupe-windows: setup
	$(BIN)/dedupe --input $(DEDUPE_SCALE_INPUT) --output $(OUT)/dedupe-scale-input --set dedupe.device=cpu
	cargo run --release --example dedupe_window_search -- $(OUT)/dedupe-scale-input/crops
	cargo run --release --example dedupe_code_search -- $(OUT)/dedupe-scale-input/codes.npy
	cargo run --release --example dedupe_check_profile -- $(OUT)/dedupe-scale-input/crops

# The copy test at scale (docs/train.md): crop the set, 10,000 samples (training images replayed with
# noise) against its images less 5,000 held out, then NumPy's brute force on the same samples.
COPY_BENCH_INPUT ?= ../shared/data/tiny-imagenet-32-train.tar.gz
bench-copy: setup
	$(BIN)/crop --input $(COPY_BENCH_INPUT) --output $(OUT)/copy-bench-crops
	cargo run --release --example copy_test_bench -- $(OUT)/copy-bench-crops $(OUT)/copy-bench 10000 5000
	$(VENV)/bin/python benches/copy_test_reference.py $(OUT)/copy-bench-crops $(OUT)/copy-bench 5000

# Dedupe's cost per photo as the set grows (issue 38): the stage on 25%, 50%, all of the planted set
# that `make eval-dedupe-scale ... --write-set` writes, and all of it plus CIFAR-10's and the ImageNet
# samples' photos: CPU time, wall time and peak memory per step and image (benches/dedupe_growth.py).
GROWTH_SET ?= $(OUT)/tin100k-planted.tar
bench-dedupe-growth: setup
	python3 benches/dedupe_growth.py $(GROWTH_SET) $(OUT)/dedupe-growth ../shared/data/cifar10-train-jpeg.tar.gz ../shared/data/imagenet-samples

# Dedupe's steps after decoding on N synthetic images (default 1,000,000; SYNTH_N=3000000).
bench-dedupe-synthetic: setup
	cargo run --release --example dedupe_scale_synthetic -- $(or $(SYNTH_N),1000000) $(OUT)/dedupe-synthetic

bench-train: setup
	bash benches/train_step_cpu.sh 5 3

# The paper's data side: each stage runs when its input is configured (configs/paper.toml [paths] or
# FACES_DIR / LSUN_DIR / IMAGENET_DIR on the make line), is skipped with a line otherwise, and resumes
# when re-run (finished parts are kept).
preprocess: setup
	@if [ -z "$(FACES_DIR)" ]; then echo "preprocess: FACES_DIR is not set, skipping the faces stage"; \
	else $(BIN)/faces --config configs/paper.toml --input $(FACES_DIR) --output $(OUT)/faces; fi
	@if [ -z "$(LSUN_DIR)" ]; then echo "preprocess: LSUN_DIR is not set, skipping the dedupe stage"; \
	else $(BIN)/dedupe --config configs/paper.toml --input $(LSUN_DIR) --output $(OUT)/lsun; fi
	@if [ -z "$(IMAGENET_DIR)" ]; then echo "preprocess: IMAGENET_DIR is not set, skipping the crop stage"; \
	else $(BIN)/crop --config configs/paper.toml --input $(IMAGENET_DIR) --output $(OUT)/imagenet32; fi
	@mkdir -p $(OUT) && $(BIN)/report --run $(OUT) >/dev/null && echo "preprocess: report in $(OUT)/report.html"

# make preprocess / train / cifar-eval as Slurm jobs with their dependencies (slurm/submit; partition,
# account, times, GPU line and array size in slurm/site.conf). docs/cluster.md. No `setup`: these run
# on a login node, where nothing is installed or built; slurm/submit says which command builds what
# is missing (make build, where the toolchain is).
slurm-preprocess slurm-train slurm-all:
	OUT=$(OUT) IMAGENET_DIR=$(IMAGENET_DIR) FACES_DIR=$(FACES_DIR) LSUN_DIR=$(LSUN_DIR) CIFAR_DIR=$(CIFAR_DIR) BIN=$(BIN) \
		slurm/submit $(@:slurm-%=%)
slurm-status:
	slurm/submit status $(OUT)

train: setup
	@if [ -z "$$(ls $(OUT)/imagenet32/images-*.npy 2>/dev/null)" ]; then \
		echo "train: no packed set in $(OUT)/imagenet32 (run make preprocess IMAGENET_DIR=...), skipping"; \
	else $(BIN)/train --config configs/paper.toml --input $(OUT)/imagenet32 --output $(OUT)/train && \
		$(BIN)/report --run $(OUT); fi

# Which D: every snapshot of make train's run scored on the validation split (never the test split);
# snapshots.md names the best, train --checkpoint <best> --export-discriminator publishes it.
select-d: setup
	@if [ ! -d $(OUT)/train/snapshots ]; then echo "select-d: no snapshots in $(OUT)/train (make train)"; \
	elif [ -z "$(CIFAR_DIR)" ] || [ ! -e "$(CIFAR_DIR)" ]; then echo "select-d: no CIFAR-10 in CIFAR_DIR=$(CIFAR_DIR), skipping"; \
	else $(BIN)/cifar-eval --config configs/paper.toml --snapshots $(OUT)/train --input $(CIFAR_DIR) --output $(OUT)/select; fi

# The official binary batches (162 MB) from the dataset's home page, checked against its md5.
CIFAR_URL := https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
CIFAR_MD5 := c32a1d4ab5d03f1284b67883e8d87530
cifar-data:
	@if [ -z "$(CIFAR_DIR)" ]; then echo "cifar-data: CIFAR_DIR is empty"; exit 1; fi
	@if [ -f $(CIFAR_DIR)/cifar-10-batches-bin/test_batch.bin ]; then echo "cifar-data: $(CIFAR_DIR) is ready"; else \
		mkdir -p $(CIFAR_DIR) && \
		curl -fL --retry 3 -o $(CIFAR_DIR)/cifar-10-binary.tar.gz.partial $(CIFAR_URL) && \
		echo "$(CIFAR_MD5)  $(CIFAR_DIR)/cifar-10-binary.tar.gz.partial" | md5sum -c - && \
		mv $(CIFAR_DIR)/cifar-10-binary.tar.gz.partial $(CIFAR_DIR)/cifar-10-binary.tar.gz && \
		tar -xzf $(CIFAR_DIR)/cifar-10-binary.tar.gz -C $(CIFAR_DIR) && \
		echo "cifar-data: CIFAR-10 binary batches in $(CIFAR_DIR)/cifar-10-batches-bin"; fi

cifar-eval: setup
	@if [ -z "$(CIFAR_DIR)" ] || [ ! -e "$(CIFAR_DIR)" ]; then echo "cifar-eval: no CIFAR-10 in CIFAR_DIR=$(CIFAR_DIR) (make cifar-data, or CIFAR_DIR=...), skipping"; \
	else $(BIN)/cifar-eval --config configs/paper.toml --input $(CIFAR_DIR) --discriminator $(D) --output $(OUT)/cifar-eval && \
		$(BIN)/report --run $(OUT); fi

# Needs features saved by cifar-eval (--set cifar_eval.save_features=true) and scikit-learn.
FEATURES ?= $(OUT)/cifar-eval
bench-svm: setup
	[ -x .bench-venv/bin/python ] || $(PYTHON) -m venv .bench-venv
	.bench-venv/bin/pip install -q "numpy<2" scikit-learn
	.bench-venv/bin/python benches/svm_vs_sklearn.py $(FEATURES)
