export declare const chromiumPath: string;
export declare const chromiumArgs: readonly string[];
export declare const webgpuChromiumArgs: readonly string[];
export declare function chromiumLaunchOptions(variant?: { webgpu?: boolean }): {
  executablePath: string;
  args: string[];
};
