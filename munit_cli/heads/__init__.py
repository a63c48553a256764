"""Head finding (issue 18): a small detector of the most prominent cat or dog head, the box
maths it needs, head crops for training sets, and paste-back for whole-photo translation.

  boxes.py    box maths: IoU, square-ing, framing margin, clipping, fitting into a photo, letterbox
  network.py  the CNN (heat map + offsets + size at stride 8) and its decoding
  detector.py the `detector` safetensors file and the loaded Detector that finds heads in photos
  data.py     training photos and boxes, the probe split, augmentation, synthesised negatives
  training.py the training loop, the threshold, held-out evaluation and speed
  compose.py  square crops, the feathered paste-back of a translated crop, translate --heads
  crops.py    `munit heads`: a crop per photo into a folder, with a manifest
"""
