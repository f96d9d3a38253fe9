"""Reference outputs of PIL and torchvision for the image pipeline's tests.

Usage: image_transforms.py JOB.json OUT.safetensors

JOB.json: {"write": DIR, "images": [paths], "boxes": [[top, left, height, width], ...]}
- writes into DIR the images the Rust side cannot write itself: cmyk.jpg (a CMYK JPEG, as Pillow
  saves it) and palette.png (a palette PNG with a transparent index);
- for every image: "decoded/i" = PIL open + convert("RGB") (HWC uint8);
- for every image, from that decoded image: "resize_bilinear/i" and "resize_bicubic/i" =
  torchvision Resize((256, 256)) with bilinear / bicubic interpolation (PIL path, antialiased);
  "center/i" = CenterCrop(224) of the bilinear resize; for each box b: "crop/i/b" = F.crop and
  "crop_flip/i/b" = F.hflip(F.crop(...)), and "resized_crop/i/b" = F.resized_crop(..., [224, 224])
  (bilinear), all on the bilinear resize.

Written from torchvision's documented transforms, independently of the Rust code.
"""

import json
import sys

import numpy as np
from PIL import Image
from safetensors.numpy import save_file
from torchvision.transforms import CenterCrop, InterpolationMode, Resize
from torchvision.transforms import functional as F


def write_fixtures(folder):
    rng = np.random.default_rng(7)
    smooth = np.kron(rng.integers(0, 256, (12, 16, 4), dtype=np.uint8), np.ones((8, 8, 1), dtype=np.uint8))
    Image.fromarray(smooth, "CMYK").save(f"{folder}/cmyk.jpg", quality=95)
    palette = Image.fromarray(smooth[:, :, 0] // 16, "L").convert("P")
    palette.putpalette([v for k in range(256) for v in (k * 16 % 256, 255 - k, k * 3 % 256)])
    palette.save(f"{folder}/palette.png", transparency=3)


def hwc(image):
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def main():
    job = json.load(open(sys.argv[1]))
    write_fixtures(job["write"])
    out = {}
    for i, path in enumerate(job["images"]):
        rgb = Image.open(path).convert("RGB")
        out[f"decoded/{i}"] = hwc(rgb)
        bilinear = Resize((256, 256), interpolation=InterpolationMode.BILINEAR)(rgb)
        out[f"resize_bilinear/{i}"] = hwc(bilinear)
        out[f"resize_bicubic/{i}"] = hwc(Resize((256, 256), interpolation=InterpolationMode.BICUBIC)(rgb))
        out[f"center/{i}"] = hwc(CenterCrop(224)(bilinear))
        for b, (top, left, height, width) in enumerate(job["boxes"]):
            crop = F.crop(bilinear, top, left, height, width)
            out[f"crop/{i}/{b}"] = hwc(crop)
            out[f"crop_flip/{i}/{b}"] = hwc(F.hflip(crop))
            out[f"resized_crop/{i}/{b}"] = hwc(F.resized_crop(bilinear, top, left, height, width, [224, 224], InterpolationMode.BILINEAR))
    save_file(out, sys.argv[2])


if __name__ == "__main__":
    main()
