"""`emotion-edge photo`: the loop's detector and classifier on still images (no smoothing).

Owners test a device with photos this way, and it is how a new model is tried on one's own pictures.
Exit status: 0 every image read, 1 some image or path failed (one line each on stderr), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys

from edge.commands.common import config_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("photo", help="detect faces and classify emotions in still images (files or folders)",
                       description="Run the loop's face detector and emotion classifier on still images, without smoothing.",
                       epilog="Exit status: 0 all images read, 1 an image or path failed (reported, skipped), 2 bad arguments.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP) or folders of them")
    p.add_argument("--json", action="store_true", help="print one JSON array, one object per image")
    p.add_argument("--annotate", metavar="DIR", help="write a copy of each image with boxes and labels drawn")
    p.add_argument("--crop", metavar="DIR", help="write each face exactly as the model saw it at the model's own crop margin (PNG; "
                        "of the four framings averaged, the second, which --single-crop classifies alone)")
    p.add_argument("--model", metavar="PATH", help="NAME.tflite to try (with NAME.json beside it); default: the configured model")
    p.add_argument("--calibration", metavar="PATH",
                   help="apply this per-person calibration (from `emotion-edge calibrate`); default: none, since photos may show anyone")
    p.add_argument("--cropped", action="store_true",
                   help="each image is one already-cropped face (FER2013, CK+ ...): no detection, box = whole image")
    p.add_argument("--single-crop", action="store_true",
                   help="classify only the model's own crop of each face, as the loop does per frame (default: "
                        "the average of four framings, which a single photo needs more than a video)")


def _say(msg: str) -> None:
    from edge.text import printable
    print(f"emotion-edge: photo: {printable(msg)}", file=sys.stderr)  # names may hold newlines or escapes


def main(args: argparse.Namespace) -> int:
    from edge.pipeline import build_calibration, build_classifier
    from edge.errors import EdgeError, FrameError, SourceError
    from edge.photo import PHOTO_SUFFIXES, OutputNames, PhotoAnalyzer, PhotoResult, annotate, check_output_dir, expand_inputs, read_image, write_image

    cfg = config_from_args(args)
    if not args.calibration:
        cfg.calibrate.strength = 0.0  # photos may show anyone: calibrate only when asked
    files, problems = expand_inputs(args.images)
    # argument errors (exit 2) before any work: output folders, then model and detector
    ann_dir = check_output_dir(args.annotate, files, "--annotate") if args.annotate else None
    crop_dir = check_output_dir(args.crop, files, "--crop") if args.crop else None
    failed = bool(problems)
    for msg in problems:
        _say(msg)

    results: list[PhotoResult] = []
    names = OutputNames()
    with build_classifier(cfg, multi_crop=not args.single_crop) as clf:
        calibration = build_calibration(cfg, clf, required=bool(args.calibration))
        detector = None
        if not args.cropped:
            from edge.detect import StillDetector
            detector = StillDetector(cfg.detect)
        analyzer = PhotoAnalyzer(clf, detector, calibration)
        for path in files:
            try:
                img = read_image(path)
                faces = analyzer.analyse(img.gray)
            except (SourceError, FrameError) as e:
                _say(str(e) if str(path) in str(e) else f"{path}: {e}")
                failed = True
                continue
            res = PhotoResult(str(path), tuple(faces))
            results.append(res)
            if not args.json:
                print(res.to_text(), flush=True)
            if ann_dir is None and crop_dir is None:
                continue
            stem = names.stem(path)
            try:
                if ann_dir is not None:
                    drawn = annotate(img.color if img.color is not None else img.gray, faces, cfg.led.colors)
                    suffix = path.suffix if path.suffix.lower() in PHOTO_SUFFIXES else f"{path.suffix}.png"
                    write_image(ann_dir / f"{stem}{suffix}", drawn)
                if crop_dir is not None:
                    for i, f in enumerate(faces, 1):
                        write_image(crop_dir / f"{stem}_face{i}.png", analyzer.model_input(img.gray, f.box))
            except EdgeError as e:
                _say(str(e))
                failed = True
    if args.json:
        # one image per line: valid JSON that still reads (and greps) well
        sys.stdout.write("[\n" + ",\n".join(json.dumps(r.to_json()) for r in results) + ("\n]\n" if results else "]\n"))
    return 1 if failed else 0
