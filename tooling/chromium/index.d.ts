export declare const chromiumPath: string;
export declare const chromiumArgs: readonly string[];
export declare function chromiumLaunchOptions(): { executablePath: string; args: string[] };
