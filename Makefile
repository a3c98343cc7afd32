# One-machine commands (loopback only). `make help` lists them.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
PROFILE ?= smoke
FAST_CNN_CKPT ?= checkpoints/fast-cnn/teacher/best.pt
DISTILHUBERT_CKPT ?= checkpoints/distilhubert/teacher/best.pt

.PHONY: help setup test lint data data-smoke data-full train-fast-cnn release-fast-cnn train-distilhubert release-distilhubert benchmark clean mlflow mlflow-stop up down load-test

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

setup:  ## Debian packages + .venv with the project (idempotent)
	bash scripts/setup.sh

test: setup  ## set up, then lint and run the whole test suite (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint:  ## ruff
	$(BIN)/ruff check .

data-smoke: setup  ## build the smoke data (seconds) through DVC
	$(BIN)/dvc repro inventory@smoke conversations@smoke ami

data-full: setup  ## build the full data (inventory, dev/test conversations) through DVC
	$(BIN)/dvc repro inventory@full conversations@full ami

data: data-smoke data-full  ## both profiles

train-fast-cnn: setup  ## distil the Fast CNN from the teacher (pool of teacher targets, then ~1 h of training; resumes)
	$(BIN)/dvc repro distill-pool@full
	$(BIN)/flywheel distill --model fast-cnn --recipe teacher

train-distilhubert: setup  ## distil DistilHuBERT from the teacher (from scratch; first 2 pool shards, ~1.5 h; resumes)
	$(BIN)/flywheel data distill-pool --profile full --shard 0 --shard 1
	$(BIN)/flywheel distill --model distilhubert --recipe teacher

mlflow: setup  ## MLflow tracking server + registry at http://127.0.0.1:5000 (background; runtime/mlflow/)
	$(BIN)/flywheel mlflow

mlflow-stop:  ## stop the background MLflow server
	$(BIN)/flywheel mlflow --stop

up: setup  ## start MLflow and Ray Serve on loopback (pid files under runtime/), print the URL
	$(BIN)/flywheel db upgrade
	$(BIN)/flywheel mlflow || echo "MLflow did not start: arms fall back to models/release/"
	$(BIN)/flywheel serve up

down:  ## stop what `make up` started (Ray Serve, MLflow)
	-$(BIN)/flywheel serve down
	-$(BIN)/flywheel mlflow --stop

.PHONY: label-studio label-studio-stop
label-studio: setup  ## Label Studio review queue at http://127.0.0.1:8080 (background; runtime/label-studio/)
	$(BIN)/flywheel label serve

label-studio-stop:  ## stop the background Label Studio server
	$(BIN)/flywheel label serve --stop

load-test:  ## load benchmark of the serving path (minutes; writes reports/benchmarks/load.json)
	$(BIN)/python benchmarks/load.py

release-fast-cnn: setup  ## tune pooling + threshold on dev-real + ami dev, export static int8, benchmark all systems, write the card
	$(BIN)/python -m experiments.tune_pooling --checkpoint $(FAST_CNN_CKPT) --dev-set data/real/dev-real \
		--powers 1,2,4 --write-params
	$(BIN)/flywheel export-onnx --checkpoint $(FAST_CNN_CKPT) --model-type fast-cnn \
		--optimization-level extended --quantize int8-static --out models/release/fast-cnn.onnx
	$(BIN)/flywheel tune --system fast-cnn --dev-set data/real/dev-real --dev-set data/ami-debug/development \
		--model-path models/release/fast-cnn.onnx --thresholds 0.05:0.8:0.025 --write-params
	$(BIN)/python scripts/stamp_pipeline.py fast-cnn
	$(BIN)/python benchmarks/diarization.py --systems baseline,senko,pyannote,teacher,fast-cnn,distilhubert
	$(BIN)/python scripts/release_card.py fast-cnn

release-distilhubert: setup  ## export the distilled DistilHuBERT (int8), tune its threshold on dev-real + ami dev, benchmark, card
	$(BIN)/flywheel export-onnx --checkpoint $(DISTILHUBERT_CKPT) --model-type distilhubert \
		--optimization-level extended --quantize int8 --out models/release/distilhubert.onnx
	$(BIN)/flywheel tune --system distilhubert --dev-set data/real/dev-real --dev-set data/ami-debug/development \
		--model-path models/release/distilhubert.onnx --thresholds 0.1:0.8:0.05 --write-params
	$(BIN)/python scripts/stamp_pipeline.py distilhubert
	$(BIN)/python benchmarks/diarization.py --systems baseline,fast-cnn,distilhubert
	$(BIN)/python scripts/release_card.py distilhubert

benchmark: setup  ## accuracy + speed of every system side by side (reports/benchmarks/diarization.json)
	$(BIN)/python benchmarks/diarization.py --systems baseline,fast-cnn,distilhubert

clean:  ## remove generated reports and caches (keeps data/ and checkpoints/)
	rm -rf reports .pytest_cache .ruff_cache
