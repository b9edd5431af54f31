"""Caption metrics of the COCO evaluation: BLEU-1..4, METEOR, ROUGE-L and CIDEr (``pycocoevalcap``).

``pycocoevalcap`` is optional (``pip install --no-deps pycocoevalcap==1.2``; its BLEU, ROUGE-L and
CIDEr scorers need only numpy, not ``pycocotools``) and imported when a score is asked for.
METEOR runs the bundled ``meteor-1.5.jar`` and so needs ``java`` on the PATH; without it (or
when the jar fails) METEOR is reported as unavailable, with the reason, never as a number.

Captions are scored as given: lower-case words separated by single spaces, which is what the
synthetic captions and the decoders produce, so the COCO PTB tokenizer (also Java) is not run.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Hashable, Mapping, Sequence

#: Install command of the optional scorer package.
PYCOCOEVALCAP_INSTALL = "pip install --no-deps pycocoevalcap==1.2"
#: Metric names in the order they are reported.
METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def pycocoevalcap_available() -> bool:
    """Whether ``pycocoevalcap`` is installed (checked without importing it)."""
    return importlib.util.find_spec("pycocoevalcap") is not None


def _check(references: Mapping, hypotheses: Mapping) -> tuple[dict, dict]:
    if not references:
        raise ValueError("no captions to score: references is empty")
    if set(references) != set(hypotheses):
        missing = set(references) ^ set(hypotheses)
        raise ValueError(
            f"references and hypotheses must have the same keys (one per image); "
            f"{len(missing)} keys differ, e.g. {sorted(map(str, missing))[:3]}"
        )
    gts, res = {}, {}
    for key in references:
        refs, hyp = references[key], hypotheses[key]
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) and r for r in refs):
            raise ValueError(
                f"references[{key!r}] must be a non-empty list of non-empty strings, got {refs!r}"
            )
        if not isinstance(hyp, str):
            raise ValueError(f"hypotheses[{key!r}] must be a string, got {type(hyp).__name__}")
        gts[key] = [" ".join(r.split()) for r in refs]
        # an empty caption is scored as one unknown token (the scorers split on spaces)
        res[key] = [" ".join(hyp.split()) or "<empty>"]
    return gts, res


class CaptionScorer:
    """Scores caption sets; keeps one METEOR (Java) process across calls. Close it when done.

    :param meteor: compute METEOR (needs ``java``); False reports it as not requested.
    """

    def __init__(self, meteor: bool = True):
        if not pycocoevalcap_available():
            # imported here: pyro_betalstm.data loads torch, which scoring captions does not need
            from .data._packages import MissingDependency

            raise MissingDependency(
                f"caption metrics need pycocoevalcap; install it with `{PYCOCOEVALCAP_INSTALL}`"
            )
        self.want_meteor = meteor
        self._meteor = None
        self.meteor_unavailable: str | None = None if meteor else "not requested"

    def _meteor_scorer(self):
        if self._meteor is None and self.meteor_unavailable is None:
            if shutil.which("java") is None:
                self.meteor_unavailable = "java was not found on the PATH (METEOR runs a Java jar)"
            else:
                try:
                    from pycocoevalcap.meteor.meteor import Meteor

                    self._meteor = Meteor()
                except (OSError, ValueError) as err:
                    self.meteor_unavailable = f"the METEOR jar could not start: {err}"
        return self._meteor

    def score(
        self,
        references: Mapping[Hashable, Sequence[str]],
        hypotheses: Mapping[Hashable, str],
    ) -> dict:
        """Corpus-level scores of ``hypotheses[key]`` against ``references[key]``.

        Returns ``{"BLEU-1": ..., ..., "CIDEr": ..., "num_images": N}``; ``METEOR`` is None
        when it could not be computed, and ``METEOR_unavailable`` then says why. Scores are in
        [0, 1] except CIDEr, which pycocoevalcap computes in its CIDEr-D form (clipped n-gram
        counts, a Gaussian length penalty, times 10), so at most 10; its idf weights come from
        the reference set, so it is comparable only between runs scored on the same images.
        """
        gts, res = _check(references, hypotheses)
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        result: dict = {f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)}
        result["METEOR"] = None
        meteor = self._meteor_scorer()
        if meteor is not None:
            try:
                result["METEOR"] = float(meteor.compute_score(gts, res)[0])
            except (OSError, ValueError) as err:  # the Java process died or printed no score
                self.meteor_unavailable = f"the METEOR jar failed: {err!r}"
                self._close_meteor()
        if result["METEOR"] is None:
            result["METEOR_unavailable"] = self.meteor_unavailable
        result["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
        result["CIDEr"] = float(Cider().compute_score(gts, res)[0])
        result["num_images"] = len(gts)
        return result

    def _close_meteor(self) -> None:
        if self._meteor is None:
            return
        meteor, self._meteor = self._meteor, None
        # a call that failed half-way leaves pycocoevalcap's lock held, and its __del__ (which
        # takes the lock) would then block the garbage collector for ever
        if meteor.lock.locked():
            meteor.lock.release()
        process = meteor.meteor_p  # ended now rather than at garbage collection
        if process.stdin and not process.stdin.closed:
            process.stdin.close()
        process.kill()
        process.wait()

    def close(self) -> None:
        """End the METEOR process, if one was started."""
        self._close_meteor()

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def caption_metrics(
    references: Mapping[Hashable, Sequence[str]],
    hypotheses: Mapping[Hashable, str],
    meteor: bool = True,
) -> dict:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of one caption set (see :meth:`CaptionScorer.score`).

    Example::

        refs = {0: ["a seven in the top left"], 1: ["a two in the bottom right", "..."]}
        scores = caption_metrics(refs, {0: "a seven in the top left", 1: "a two"})
        scores["BLEU-4"], scores["CIDEr"], scores["METEOR"]  # METEOR None without java

    To score several caption sets against the same references, use one :class:`CaptionScorer`
    (METEOR's Java start-up, 10 to 50 seconds, is paid once).
    """
    with CaptionScorer(meteor=meteor) as scorer:
        return scorer.score(references, hypotheses)
