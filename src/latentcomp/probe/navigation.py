"""Navigation in the probing report: for each model, supervised editing directions per attribute (the
analyzer labels the samples), their conditional versions and the best-matching unsupervised (PCA / SeFa)
directions, with flip rates, interference and strips of edits (`latentcomp.navigate.evaluate` does the
work; this module only runs it per model and keeps what the report shows)."""

from __future__ import annotations

from pathlib import Path

from .common import log, model_label

#: attributes whose strips the report's figure shows (all strips are written under navigate/strips/)
FIGURE_ATTRIBUTES = ("hair_style", "mouth_expression", "glasses", "skin_tone")


def _geometry_summary(geo: dict | None) -> dict:
    """Per walk: method, gain and reach on each side (what the report's table shows)."""
    if not geo or "walks" not in geo:
        return {"skipped": (geo or {}).get("skipped", "not run")}
    return {
        name: {
            "method": w["method"],
            "unit": w["unit"],
            "gain": w["gain"],
            "reach_negative": -w["reach"]["negative"],
            "reach_positive": w["reach"]["positive"],
            "spread": geo.get("spread", {}).get(w["transform"]),
        }
        for name, w in geo["walks"].items()
    }


def run_navigation(pipes, out: Path, analyzer, quick: bool = False, seed: int = 0) -> dict:
    from ..errors import LatentcompError
    from ..navigate.evaluate import EvalSizes, evaluate_navigation, save_results, strip_figure

    if analyzer is None:
        return {"skipped": "navigation needs an analyzer that labels attributes (--analyzer)", "models": []}
    sizes = EvalSizes.quick() if quick else EvalSizes()
    results, models = [], []
    for pipe in pipes:
        log(f"navigate: {model_label(pipe)}")
        try:
            res = evaluate_navigation(
                pipe,
                analyzer,
                sizes=sizes,
                seed=seed,
                log=log,
                geometry=True,
                geometry_steps=10 if quick else 100,
            )
        except LatentcompError as e:  # e.g. an attribute the samples never show: no boundary to fit
            log(f"navigate: {model_label(pipe)} skipped: {e}")
            models.append({"model": model_label(pipe), "skipped": str(e)})
            continue
        save_results(res, out / "navigate")
        results.append(res)
        comparison = res.get("comparison") or {}
        models.append(
            {
                "model": model_label(pipe),
                "space": res["space"],
                "strength": res["strength"],
                "summary": res["summary"],
                "comparison": comparison.get("summary") or {"skipped": comparison.get("skipped", "")},
                "geometry": _geometry_summary(res.get("geometry")),
            }
        )
    if not results:
        return {"models": models}
    try:
        strip_figure(results, out / "navigate_strips.png", ("plain", "conditional", "unsupervised"),
                     attributes=FIGURE_ATTRIBUTES)  # fmt: skip
    except LatentcompError:  # none of those attributes (another analyzer): draw every target
        strip_figure(results, out / "navigate_strips.png", ("plain", "conditional", "unsupervised"))
    return {"models": models, "plot": "navigate_strips.png", "sizes": sizes.__dict__}
