"""The torchvision side of `bench-suite bench-input`, and the benchmark's images.

  bench_input_torchvision.py make DIR PER_SIZE
      scikit-image's sample photographs (astronaut, coffee, chelsea, rocket, immunohistochemistry,
      hubble_deep_field), resized with PIL to 300x300, 640x480 and 1000x1000 and saved as JPEG
      (quality 90) into DIR/<size>/<photo>/NNN.jpg, PER_SIZE images per size, each a slightly
      shifted crop so that no two files are identical.
  bench_input_torchvision.py bench DIR WORKERS BATCH BATCHES
      ImageFolder(DIR) + DataLoader(shuffle, drop_last, WORKERS workers, BATCH) with the training
      transform Resize((256, 256)) -> RandomCrop(224) -> RandomHorizontalFlip -> ToTensor ->
      Normalize(ImageNet); times BATCHES batches after one warm-up batch and prints one JSON line
      {"images": n, "seconds": s, "images_per_second": r}.
"""

import json
import os
import sys
import time


def make(folder, per_size):
    from PIL import Image
    from skimage import data

    photos = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry"]
    sizes = [(300, 300), (640, 480), (1000, 1000)]
    for w, h in sizes:
        for k in range(per_size):
            name = photos[k % len(photos)]
            base = Image.fromarray(getattr(data, name)()).convert("RGB")
            dx, dy = (k * 7) % 23, (k * 5) % 19
            crop = base.crop((dx, dy, base.width - (22 - dx), base.height - (18 - dy))).resize((w, h), Image.BILINEAR)
            out = os.path.join(folder, f"{w}x{h}", name)
            os.makedirs(out, exist_ok=True)
            crop.save(os.path.join(out, f"{k:03d}.jpg"), quality=90)


def bench(folder, workers, batch, batches):
    import torch
    from torchvision import datasets, transforms

    torch.set_num_threads(1)
    transform = transforms.Compose([
        transforms.Resize((256, 256)),
        transforms.RandomCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    dataset = datasets.ImageFolder(folder, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    done, seconds, started = 0, 0.0, None
    while done < batches:
        for images, _ in loader:
            if started is None:
                started = time.perf_counter()  # after the warm-up batch (worker start-up excluded)
                continue
            done += 1
            if done == batches:
                seconds = time.perf_counter() - started
                break
    n = batches * batch
    print(json.dumps({"images": n, "seconds": seconds, "images_per_second": n / seconds}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "bench":
        bench(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(f"unknown command {sys.argv[1]}: expected make or bench")
