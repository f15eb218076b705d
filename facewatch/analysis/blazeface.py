"""MediaPipe's full-range face detection graph, with a second output: the faces it is unsure of.

MediaPipe's full-range graph (`mediapipe/modules/face_detection/face_detection_full_range.pbtxt`)
keeps only detections scoring 0.6 or more, whatever `min_detection_confidence` asks (measured:
1,168 detections on 12 MP and 1080p photos, none below 0.604, and the same faces asked for
anything from 0.05 to 0.8). The model itself scores smoothly: a face the full-size picture scores
0.73 scores 0.57 from a 1/8 decode, and vanishes. This is the same graph, node for node (the same
calculators, options and model, so `detections` equal the solution's to the last digit: tested),
with the model's tensors also decoded from HINT_SCORE into `hints`, at the price of a second
non-maximum suppression (microseconds).
"""
from __future__ import annotations

FLOOR = 0.6  # the full-range graph's own min_score_thresh
HINT_SCORE = 0.3
SIDE = 192


def _decoded(name: str, min_score: float) -> str:
    """Tensors -> detections above `min_score` -> non-maximum suppression -> picture coordinates."""
    return f'''
node {{
  calculator: "TensorsToDetectionsCalculator"
  input_stream: "TENSORS:detection_tensors"
  input_side_packet: "ANCHORS:anchors"
  output_stream: "DETECTIONS:unfiltered_{name}"
  options: {{
    [mediapipe.TensorsToDetectionsCalculatorOptions.ext] {{
      num_classes: 1 num_boxes: 2304 num_coords: 16 box_coord_offset: 0 keypoint_coord_offset: 4
      num_keypoints: 6 num_values_per_keypoint: 2 sigmoid_score: true score_clipping_thresh: 100.0
      reverse_output_order: true x_scale: {SIDE}.0 y_scale: {SIDE}.0 h_scale: {SIDE}.0 w_scale: {SIDE}.0
      min_score_thresh: {min_score}
    }}
  }}
}}
node {{
  calculator: "NonMaxSuppressionCalculator"
  input_stream: "unfiltered_{name}"
  output_stream: "filtered_{name}"
  options: {{
    [mediapipe.NonMaxSuppressionCalculatorOptions.ext] {{
      min_suppression_threshold: 0.3 overlap_type: INTERSECTION_OVER_UNION algorithm: WEIGHTED
    }}
  }}
}}
node {{
  calculator: "DetectionProjectionCalculator"
  input_stream: "DETECTIONS:filtered_{name}"
  input_stream: "PROJECTION_MATRIX:transform_matrix"
  output_stream: "DETECTIONS:{name}"
}}
'''


GRAPH = f'''
input_stream: "image"
output_stream: "detections"
output_stream: "hints"
node {{ calculator: "ToImageCalculator" input_stream: "IMAGE:image" output_stream: "IMAGE:multi_backend_image" }}
node {{
  calculator: "ImageToTensorCalculator"
  input_stream: "IMAGE:multi_backend_image"
  output_stream: "TENSORS:input_tensors"
  output_stream: "MATRIX:transform_matrix"
  options: {{
    [mediapipe.ImageToTensorCalculatorOptions.ext] {{
      output_tensor_width: {SIDE} output_tensor_height: {SIDE} keep_aspect_ratio: true
      output_tensor_float_range {{ min: -1.0 max: 1.0 }} border_mode: BORDER_ZERO
    }}
  }}
}}
node {{
  calculator: "InferenceCalculator"
  input_stream: "TENSORS:input_tensors"
  output_stream: "TENSORS:detection_tensors"
  options: {{
    [mediapipe.InferenceCalculatorOptions.ext] {{
      model_path: "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite"
      delegate {{ xnnpack {{}} }}
    }}
  }}
}}
node {{
  calculator: "SsdAnchorsCalculator"
  output_side_packet: "anchors"
  options: {{
    [mediapipe.SsdAnchorsCalculatorOptions.ext] {{
      input_size_width: {SIDE} input_size_height: {SIDE} num_layers: 1 min_scale: 0.1484375 max_scale: 0.75
      anchor_offset_x: 0.5 anchor_offset_y: 0.5 strides: 4 aspect_ratios: 1.0 fixed_anchor_size: true
      interpolated_scale_aspect_ratio: 0.0
    }}
  }}
}}
''' + _decoded("detections", FLOOR) + _decoded("hints", HINT_SCORE)


class FullRangeWithHints:
    """`process(rgb)` -> (detections, hints): MediaPipe's full-range detections, and those from
    HINT_SCORE (which include them: the caller tells them apart)."""

    def __init__(self):
        from mediapipe.python.solution_base import PacketDataType, SolutionBase
        self._graph = SolutionBase(graph_config=GRAPH, outputs=["detections", "hints"],
                                   stream_type_hints={"image": PacketDataType.IMAGE_FRAME})

    def process(self, rgb) -> tuple[list, list]:
        result = self._graph.process(rgb)
        return list(result.detections or ()), list(result.hints or ())

    def close(self) -> None:
        self._graph.close()
