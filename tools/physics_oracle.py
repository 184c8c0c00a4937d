"""Which of the survey's ingredients the decoders lack limits the axes:
tools/physics_oracle.py MODEL [STARS] [SNR] [SEED].

Regenerates STARS (default 500) stars of our generator (seed SEED, default 424242, the
evaluation survey's) at S/N = SNR (default 1000, nearly noiseless) with, cumulatively, the
ingredients the line decoders have no input for taken out of the survey: as generated; with
each star's microturbulence set to the decoders' relation (Kirby et al. 2009, log g only;
the generator's also rises with Teff and scatters); with no star-to-star scatter of single
elements around their group; with no [N/Fe] scatter. Each survey's stars are refined against
MODEL's decoders at their true Teff/logg (as tools/decoder_bias.py does) and scored against
the truth. A large gain at one step says that ingredient is what the decoders miss. A
diagnosis on our own generator only: nothing here is a training input.
"""
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
from decoder_bias import r_with_truth, refine  # tools/ is on the path when run as a script

import chemlatent.synth.generator as generator
from chemlatent.model.modelio import load_model


@contextmanager
def patched(module, name: str, wrap):
    """``module.name`` replaced by ``wrap(original)`` inside the block."""
    original = getattr(module, name)
    setattr(module, name, wrap(original))
    try:
        yield
    finally:
        setattr(module, name, original)


def fixed_snr(snr: float):
    def wrap(sample):
        def labels(*args, **kwargs):
            out = sample(*args, **kwargs)
            out["snr"] = np.float32(snr)
            return out
        return labels
    return wrap


def kirby_vmicro(sample):
    def labels(*args, **kwargs):
        out = sample(*args, **kwargs)
        out["vmicro"] = np.clip(2.13 - 0.23 * out["logg"].to_numpy(), 0.5, 3.0).astype(np.float32)
        return out
    return labels


def no_nitrogen_scatter(sample):
    def labels(*args, **kwargs):
        out = sample(*args, **kwargs)
        logg = out["logg"].to_numpy()
        out["n_fe"] = np.where(logg < 2.0, 0.3 * (2.0 - logg) / 1.5, 0.0).astype(np.float32)
        return out
    return labels


def no_offsets(offsets):
    return lambda seed, idx, elements: np.zeros_like(offsets(seed, idx, elements))


STEPS = (("as generated", None),
         ("microturbulence = the decoders' relation", (generator, "sample_labels", kirby_vmicro)),
         ("+ no single-element scatter", (generator, "element_offsets", no_offsets)),
         ("+ no [N/Fe] scatter", (generator, "sample_labels", no_nitrogen_scatter)))


def main(model_dir: str, n: int = 500, snr: float = 1000.0, seed: int = 424242) -> None:
    model = load_model(model_dir).eval()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        stack.enter_context(patched(generator, "sample_labels", fixed_snr(snr)))
        for k, (label, patch) in enumerate(STEPS):
            if patch is not None:
                stack.enter_context(patched(*patch))
            survey = generator.generate_survey(Path(tmp) / f"s{k}", n, seed, progress=False)
            z, truth, *_ = refine(model, survey)
            r = r_with_truth(z, truth)
            print(f"{n} stars at S/N {snr:g}, {label}: r Fe / C / alpha "
                  f"{' / '.join(f'{v:.3f}' for v in r)}", flush=True)


if __name__ == "__main__":
    main(*(kind(v) for kind, v in zip((str, int, float, int), sys.argv[1:])))
