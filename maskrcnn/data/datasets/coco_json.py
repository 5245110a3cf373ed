"""Loading and validating COCO-format annotation files before pycocotools indexes them."""
import contextlib
import io
import json

from pycocotools.coco import COCO


class MalformedAnnotationError(ValueError):
    """A COCO annotation file is not valid; the message names the file and the fault."""


def load_coco_json(ann_file):
    """A pycocotools COCO object for `ann_file`, after checking its structure.

    Raises MalformedAnnotationError naming the file when it is not JSON, lacks "images",
    "annotations" or "categories", or has an annotation whose image_id / category_id is unknown.
    """
    try:
        with open(ann_file, "r") as f:
            content = json.load(f)
    except FileNotFoundError:
        raise MalformedAnnotationError("annotation file not found: %s" % ann_file) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MalformedAnnotationError("%s: not valid JSON (%s)" % (ann_file, error)) from None
    if not isinstance(content, dict):
        raise MalformedAnnotationError("%s: the top level must be a JSON object" % ann_file)
    for key in ("images", "annotations", "categories"):
        if key not in content:
            raise MalformedAnnotationError("%s: missing the %r list" % (ann_file, key))
        if not isinstance(content[key], list):
            raise MalformedAnnotationError("%s: %r must be a list" % (ann_file, key))
    image_ids = set()
    for position, image in enumerate(content["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise MalformedAnnotationError(
                "%s: images[%d] needs 'id' and 'file_name'" % (ann_file, position)
            )
        image_ids.add(image["id"])
    category_ids = set()
    for position, category in enumerate(content["categories"]):
        if not isinstance(category, dict) or "id" not in category:
            raise MalformedAnnotationError("%s: categories[%d] needs an 'id'" % (ann_file, position))
        category_ids.add(category["id"])
    for position, ann in enumerate(content["annotations"]):
        if not isinstance(ann, dict):
            raise MalformedAnnotationError("%s: annotations[%d] is not an object" % (ann_file, position))
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise MalformedAnnotationError(
                    "%s: annotations[%d] (id %s) lacks %r" % (ann_file, position, ann.get("id"), key)
                )
        if ann["image_id"] not in image_ids:
            raise MalformedAnnotationError(
                "%s: annotations[%d] (id %s) references unknown image_id %r"
                % (ann_file, position, ann.get("id"), ann["image_id"])
            )
        if ann["category_id"] not in category_ids:
            raise MalformedAnnotationError(
                "%s: annotations[%d] (id %s) references unknown category_id %r"
                % (ann_file, position, ann.get("id"), ann["category_id"])
            )
        ann.setdefault("iscrowd", 0)
        ann.setdefault("id", position + 1)
    coco = COCO()
    coco.dataset = content
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
